import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { DownloadView } from "../api/DownloadView";
import { INVALID_API_KEY, TransportError, UNREACHABLE } from "./errors";
import { HttpTransport } from "./http";
import { API_KEY_STORAGE, TauriTransport, pickTransport } from "./index";

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;
type Seen = { method?: string; url?: string; auth?: string; accept?: string; type?: string; body: string };

const VIEW: DownloadView = {
  repo: "mlx-community/SmolLM2-135M-Instruct-4bit",
  state: "running",
  file: "model.safetensors",
  downloaded: 1000,
  total: 4000,
  error: null,
};

// A real HTTP server on 127.0.0.1; each test sets its behaviour.
describe("HttpTransport", () => {
  let server: Server;
  let baseUrl: string;
  let handler: Handler;
  const seen: Seen[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        seen.push({
          method: req.method,
          url: req.url,
          auth: req.headers.authorization,
          accept: req.headers.accept,
          type: req.headers["content-type"],
          body,
        });
        handler(req, res, body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
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

  function transport(key: string | null = "sk-test", onUnauthorized = vi.fn()) {
    return new HttpTransport({ baseUrl, getKey: () => key, onUnauthorized, reconnectMs: 20 });
  }

  it("GETs a read's path with the key in the Authorization header", async () => {
    const info = { orchard_version: "0.1.0", mlx_version: "0.29.3", backend: "cpu", device: "cpu" };
    handler = json(200, info);
    await expect(transport().read("runtime_info")).resolves.toEqual(info);
    expect(seen).toEqual([
      { method: "GET", url: "/api/runtime", auth: "Bearer sk-test", accept: "application/json", type: undefined, body: "" },
    ]);
  });

  it("POSTs a call's input as JSON to its path", async () => {
    handler = json(200, VIEW);
    await expect(transport().call("start_download", { model: VIEW.repo })).resolves.toEqual(VIEW);
    expect(seen[0]).toMatchObject({
      method: "POST",
      url: "/api/downloads/start",
      type: "application/json",
      auth: "Bearer sk-test",
    });
    expect(JSON.parse(seen[0]!.body)).toEqual({ model: VIEW.repo });
  });

  it("sends no Authorization header before a key is known", async () => {
    handler = json(200, []);
    await transport(null).read("list_library");
    expect(seen[0]!.auth).toBeUndefined();
  });

  it("turns a 401 into an invalid_api_key error and tells the page whether a key was sent", async () => {
    handler = json(401, {
      error: { message: "Invalid API key", type: "invalid_request_error", code: "invalid_api_key" },
    });
    const refused = vi.fn();
    const err = await transport("wrong", refused).read("get_settings").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).code).toBe(INVALID_API_KEY);
    expect((err as Error).message).toBe("Invalid API key");
    expect(refused).toHaveBeenCalledWith(true);

    const missing = vi.fn();
    handler = (_req, res) => {
      res.writeHead(401);
      res.end();
    };
    const err2 = await transport(null, missing).read("get_settings").catch((e: unknown) => e);
    expect((err2 as TransportError).code).toBe(INVALID_API_KEY);
    expect((err2 as Error).message).toBe("Orchard needs an API key.");
    expect(missing).toHaveBeenCalledWith(false);
  });

  it("keeps an operation error's code and message", async () => {
    handler = json(502, { code: "hub_unreachable", message: "huggingface.co did not answer" });
    const err = await transport()
      .call("search_models", {
        text: null,
        author: null,
        sort: "downloads",
        architecture: null,
        bits: null,
        capabilities: [],
        fits_only: false,
      })
      .catch((e: unknown) => e);
    expect((err as TransportError).code).toBe("hub_unreachable");
    expect((err as Error).message).toBe("huggingface.co did not answer");
  });

  it("says the HTTP status when the error body is not JSON", async () => {
    handler = (_req, res) => {
      res.writeHead(500, { "Content-Type": "text/plain" });
      res.end("boom");
    };
    await expect(transport().read("list_library")).rejects.toThrow("HTTP 500 Internal Server Error: boom");
  });

  it("rejects a success whose body is not JSON", async () => {
    handler = (_req, res) => {
      res.writeHead(200);
      res.end("<html>");
    };
    await expect(transport().read("list_library")).rejects.toThrow("Invalid JSON from /api/library");
  });

  it("tolerates a trailing slash on the base URL", async () => {
    handler = json(200, []);
    await new HttpTransport({ baseUrl: `${baseUrl}/` }).read("list_downloads");
    expect(seen[0]!.url).toBe("/api/downloads");
  });

  it("says which address it could not reach, with the unreachable code", async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const dead = `http://127.0.0.1:${port}`;
    const err = await new HttpTransport({ baseUrl: dead }).read("list_library").catch((e: unknown) => e);
    expect((err as Error).message).toContain(`Cannot reach Orchard at ${dead}`);
    expect((err as TransportError).code).toBe(UNREACHABLE);
  });

  describe("server-sent events", () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    it("parses events split across reads, skips keep-alives, and sends the key only in a header", async () => {
      const second = { ...VIEW, downloaded: 2500 };
      const text = `: keep-alive\n\ndata: ${JSON.stringify(VIEW)}\n\ndata: ${JSON.stringify(second)}\n\n`;
      // Cut inside the comment, inside the JSON, between the two newlines that end an
      // event, inside "data:", and before the last newline.
      const between = text.lastIndexOf("\n\ndata");
      const cuts = [9, 30, between + 1, between + 5, text.length - 1];
      handler = async (_req, res) => {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        let at = 0;
        for (const cut of cuts) {
          res.write(text.slice(at, cut));
          at = cut;
          await sleep(15);
        }
        res.write(text.slice(at));
        // Keep the stream open: the client stops it.
      };
      const events: DownloadView[] = [];
      const stop = transport("sk-live").subscribe("download_events", (e) => events.push(e));
      await vi.waitFor(() => expect(events).toHaveLength(2));
      stop();
      expect(events).toEqual([VIEW, second]);
      expect(seen[0]).toMatchObject({
        method: "GET",
        url: "/api/downloads/events",
        auth: "Bearer sk-live",
        accept: "text/event-stream",
      });
    });

    it("reconnects when the stream ends, and stops for good when unsubscribed", async () => {
      let n = 0;
      handler = (_req, res) => {
        n += 1;
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.end(`data: ${JSON.stringify({ ...VIEW, downloaded: n })}\n\n`);
      };
      const events: number[] = [];
      const errors: Error[] = [];
      const stop = transport().subscribe(
        "download_events",
        (e) => events.push(e.downloaded),
        (e) => errors.push(e),
      );
      await vi.waitFor(() => expect(events.length).toBeGreaterThanOrEqual(2));
      stop();
      const count = seen.length;
      await sleep(120);
      expect(seen.length).toBe(count);
      expect(events.slice(0, 2)).toEqual([1, 2]);
      expect((errors[0] as TransportError).code).toBe(UNREACHABLE);
    });

    it("gives up on a refused key instead of retrying", async () => {
      handler = json(401, { error: { message: "Invalid API key", code: "invalid_api_key" } });
      const errors: Error[] = [];
      const refused = vi.fn();
      transport("bad", refused).subscribe("download_events", () => {}, (e) => errors.push(e));
      await vi.waitFor(() => expect(errors).toHaveLength(1));
      await sleep(100);
      expect(seen).toHaveLength(1);
      expect((errors[0] as TransportError).code).toBe(INVALID_API_KEY);
      expect(refused).toHaveBeenCalledWith(true);
    });

    it("reports an event that is not JSON and keeps reading", async () => {
      handler = (_req, res) => {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.write(`data: {oops\n\ndata: ${JSON.stringify(VIEW)}\n\n`);
      };
      const events: DownloadView[] = [];
      const errors: Error[] = [];
      const stop = transport().subscribe("download_events", (e) => events.push(e), (e) => errors.push(e));
      await vi.waitFor(() => expect(events).toHaveLength(1));
      stop();
      expect(errors[0]!.message).toMatch(/Invalid JSON/);
    });
  });
});

describe("pickTransport", () => {
  it("picks Tauri when __TAURI_INTERNALS__ exists", () => {
    const host = { __TAURI_INTERNALS__: {}, location: { origin: "tauri://localhost" } };
    expect(pickTransport(host)).toBeInstanceOf(TauriTransport);
  });

  it("picks HTTP against the page's origin otherwise, with the key from sessionStorage", async () => {
    const fetched: Request[] = [];
    const storage = new Map([[API_KEY_STORAGE, "sk-session"]]);
    const transport = pickTransport({
      location: { origin: "http://127.0.0.1:8080" },
      sessionStorage: { getItem: (k: string) => storage.get(k) ?? null },
    });
    expect(transport).toBeInstanceOf(HttpTransport);
    expect((transport as HttpTransport).baseUrl).toBe("http://127.0.0.1:8080");
    vi.stubGlobal("fetch", async (url: string, init: RequestInit) => {
      fetched.push(new Request(url, init));
      return new Response("[]", { status: 200 });
    });
    try {
      await transport.read("list_library");
    } finally {
      vi.unstubAllGlobals();
    }
    expect(fetched[0]!.url).toBe("http://127.0.0.1:8080/api/library");
    expect(fetched[0]!.headers.get("authorization")).toBe("Bearer sk-session");
  });
});
