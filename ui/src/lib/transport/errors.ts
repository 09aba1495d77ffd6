// Errors as the page sees them: a message for people and a stable `code` to branch on.
//
// Operations fail with `OpError` = `{code, message}` (ui/src/lib/api/OpError.ts); the HTTP
// API wraps its own 401 in OpenAI's `{error: {message, type, code}}`. Both end up here as a
// TransportError whose `code` is the server's code, or one of the client-side codes below.

/** The API key was missing or refused (HTTP 401): the page asks for it again. */
export const INVALID_API_KEY = "invalid_api_key";
/** Orchard itself could not be reached (the request never got an answer). */
export const UNREACHABLE = "unreachable";

/** An Error that may carry the machine-readable `code` sent by the Rust side. */
export class TransportError extends Error {
  readonly code: string | undefined;

  constructor(message: string, code?: string) {
    super(message);
    this.name = "TransportError";
    this.code = code;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** Pulls a message (and code) out of the error shapes Orchard sends. */
export function describe(reason: unknown): { message: string; code?: string } | undefined {
  if (typeof reason === "string") return { message: reason };
  if (!isRecord(reason)) return undefined;
  const code = typeof reason.code === "string" ? reason.code : undefined;
  if (typeof reason.message === "string") return { message: reason.message, code };
  if (typeof reason.error === "string") return { message: reason.error, code };
  if (isRecord(reason.error)) return describe(reason.error);
  return undefined;
}

/**
 * Turns whatever a failed call rejected with into an Error.
 *
 * Tauri commands that return `Err(e)` reject with the serialised error, which for
 * Orchard is `{ code, message }`; the Error's message is that `message` and its
 * `code` is kept on the TransportError.
 */
export function toError(reason: unknown): Error {
  if (reason instanceof Error) return reason;
  const described = describe(reason);
  if (described) return new TransportError(described.message, described.code);
  let text: string;
  try {
    text = JSON.stringify(reason) ?? String(reason);
  } catch {
    text = String(reason);
  }
  return new TransportError(`Unexpected error: ${text}`);
}

/** The code of an error, when it has one. */
export function errorCode(error: unknown): string | undefined {
  return error instanceof TransportError ? error.code : undefined;
}

/** What a screen keeps of a failure: enough to say what went wrong and branch on it. */
export type Failure = { message: string; code: string | undefined };

/** A Failure from anything thrown. */
export function toFailure(reason: unknown): Failure {
  const error = toError(reason);
  return { message: error.message || "Unknown error", code: errorCode(error) };
}
