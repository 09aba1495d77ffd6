import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  HttpTransport,
  TauriTransport,
  TransportError,
  parseServerStatus,
  pickTransport,
  toError,
  type RuntimeInfo,
  type ServerStatus,
} from "./transport";

const INFO: RuntimeInfo = { orchard_version: "0.1.0", mlx_version: "0.29.3", device: "gpu" };
const RUNNING: ServerStatus = {
  state: "running",
  url: "http://127.0.0.1:10240/v1",
  api_key_required: true,
  new_api_key: "orch-0123abcd",
  error: null,
};

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

// Runs against a real HTTP server on 127.0.0.1; each test sets its behaviour.
describe("HttpTransport", () => {
  let server: Server;
  let baseUrl: string;
  let handler: Handler;
  const seen: { method?: string; url?: string; accept?: string }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, accept: req.headers.accept });
      handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    baseUrl = `http://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve, reject) =>
      server.close((err) => (err ? reject(err) : resolve())),
    );
  });

  afterEach(() => {
    seen.length = 0;
  });

  function json(status: number, body: unknown): Handler {
    return (_req, res) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
    };
  }

  it("GETs /api/runtime and returns the runtime info", async () => {
    handler = json(200, INFO);
    await expect(new HttpTransport(baseUrl).runtimeInfo()).resolves.toEqual(INFO);
    expect(seen).toEqual([{ method: "GET", url: "/api/runtime", accept: "application/json" }]);
  });

  it("GETs /api/server and returns the server status", async () => {
    handler = json(200, RUNNING);
    await expect(new HttpTransport(baseUrl).serverStatus()).resolves.toEqual(RUNNING);
    expect(seen).toEqual([{ method: "GET", url: "/api/server", accept: "application/json" }]);
  });

  it("turns a failed server status request into an Error with the server's message", async () => {
    handler = json(503, { error: { message: "the database is locked", code: "store" } });
    await expect(new HttpTransport(baseUrl).serverStatus()).rejects.toThrow("the database is locked");
  });

  it("tolerates a trailing slash on the base URL", async () => {
    handler = json(200, { ...INFO, device: "cpu" });
    const info = await new HttpTransport(`${baseUrl}/`).runtimeInfo();
    expect(info.device).toBe("cpu");
    expect(seen[0]?.url).toBe("/api/runtime");
  });

  it("turns a 500 with a JSON error body into an Error carrying the server's message", async () => {
    handler = json(500, { code: "engine_failed", message: "MLX could not initialise Metal" });
    const err = await new HttpTransport(baseUrl).runtimeInfo().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe("MLX could not initialise Metal");
    expect((err as TransportError).code).toBe("engine_failed");
  });

  it("accepts an { error: string } body too", async () => {
    handler = json(503, { error: "engine is still loading" });
    await expect(new HttpTransport(baseUrl).runtimeInfo()).rejects.toThrow(
      /^engine is still loading$/,
    );
  });

  it("reports the status and text when the error body is not JSON", async () => {
    handler = (_req, res) => {
      res.writeHead(404, { "Content-Type": "text/plain" });
      res.end("no such route");
    };
    await expect(new HttpTransport(baseUrl).runtimeInfo()).rejects.toThrow(
      "HTTP 404 Not Found: no such route",
    );
  });

  it("rejects a 200 whose body is not runtime info", async () => {
    handler = json(200, { orchard_version: "0.1.0", mlx_version: "0.29.3", device: "tpu" });
    await expect(new HttpTransport(baseUrl).runtimeInfo()).rejects.toThrow(/Malformed runtime info/);
  });

  it("says which address it could not reach", async () => {
    // Grab a free port, then close it so nothing is listening there.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const deadUrl = `http://127.0.0.1:${port}`;
    await expect(new HttpTransport(deadUrl).runtimeInfo()).rejects.toThrow(
      `Cannot reach Orchard at ${deadUrl}`,
    );
  });
});

describe("TauriTransport", () => {
  beforeAll(() => {
    // @tauri-apps/api's invoke and mockIPC go through window.__TAURI_INTERNALS__.
    vi.stubGlobal("window", {});
  });

  afterEach(() => {
    clearMocks();
  });

  afterAll(() => {
    vi.unstubAllGlobals();
  });

  it("invokes the runtime_info command", async () => {
    const calls: string[] = [];
    mockIPC((cmd) => {
      calls.push(cmd);
      return cmd === "runtime_info" ? INFO : undefined;
    });
    await expect(new TauriTransport().runtimeInfo()).resolves.toEqual(INFO);
    expect(calls).toEqual(["runtime_info"]);
  });

  it("invokes the server_status command", async () => {
    mockIPC((cmd) => (cmd === "server_status" ? RUNNING : undefined));
    await expect(new TauriTransport().serverStatus()).resolves.toEqual(RUNNING);
  });

  it("normalises a { code, message } rejection into an Error with that message", async () => {
    mockIPC(() => {
      throw { code: "mlx_unavailable", message: "libmlx.dylib not found" };
    });
    const err = await new TauriTransport().runtimeInfo().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransportError);
    expect((err as Error).message).toBe("libmlx.dylib not found");
    expect((err as TransportError).code).toBe("mlx_unavailable");
  });
});

describe("parseServerStatus", () => {
  it("accepts each state the Rust side sends", () => {
    expect(parseServerStatus(RUNNING)).toEqual(RUNNING);
    const failed = { ...RUNNING, state: "failed", url: null, new_api_key: null, error: "port taken" };
    expect(parseServerStatus(failed)).toEqual(failed);
  });

  it("rejects malformed values", () => {
    for (const bad of [
      null,
      "running",
      { ...RUNNING, state: "sleeping" },
      { ...RUNNING, url: 10240 },
      { ...RUNNING, api_key_required: "yes" },
      { ...RUNNING, new_api_key: undefined },
      { ...RUNNING, error: {} },
    ]) {
      expect(() => parseServerStatus(bad)).toThrow(TransportError);
    }
  });
});

describe("toError", () => {
  it("keeps Errors as they are", () => {
    const original = new Error("boom");
    expect(toError(original)).toBe(original);
  });

  it("uses a rejected string as the message", () => {
    expect(toError("command runtime_info not found").message).toBe(
      "command runtime_info not found",
    );
  });

  it("never yields an empty or [object Object] message for unknown shapes", () => {
    expect(toError({ status: 7 }).message).toBe('Unexpected error: {"status":7}');
    expect(toError(undefined).message).toBe("Unexpected error: undefined");
  });
});

describe("pickTransport", () => {
  it("picks Tauri when __TAURI_INTERNALS__ exists", () => {
    const host = { __TAURI_INTERNALS__: {}, location: { origin: "tauri://localhost" } };
    expect(pickTransport(host)).toBeInstanceOf(TauriTransport);
  });

  it("picks HTTP against the page's origin otherwise", () => {
    const transport = pickTransport({ location: { origin: "http://127.0.0.1:8080" } });
    expect(transport).toBeInstanceOf(HttpTransport);
    expect((transport as HttpTransport).baseUrl).toBe("http://127.0.0.1:8080");
  });

  it("reads the real window by default", () => {
    vi.stubGlobal("window", { location: { origin: "http://localhost:1420" } });
    try {
      expect(pickTransport()).toBeInstanceOf(HttpTransport);
      vi.stubGlobal("window", {
        __TAURI_INTERNALS__: {},
        location: { origin: "tauri://localhost" },
      });
      expect(pickTransport()).toBeInstanceOf(TauriTransport);
    } finally {
      vi.unstubAllGlobals();
    }
  });
});
