import { Channel } from "@tauri-apps/api/core";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { DownloadView } from "../api/DownloadView";
import { TransportError, toError } from "./errors";
import { TauriTransport } from "./tauri";
import { parseServerStatus, type ServerStatus } from "./types";

const RUNNING: ServerStatus = {
  state: "running",
  url: "http://127.0.0.1:10240/v1",
  api_key_required: true,
  new_api_key: "orch-0123abcd",
  error: null,
};

const VIEW: DownloadView = {
  repo: "mlx-community/SmolLM2-135M-Instruct-4bit",
  state: "running",
  file: "model.safetensors",
  downloaded: 10,
  total: 100,
  error: null,
};

type Internals = { runCallback(id: number, data: unknown): void };

describe("TauriTransport", () => {
  beforeAll(() => {
    // @tauri-apps/api's invoke and mockIPC go through window.__TAURI_INTERNALS__.
    vi.stubGlobal("window", { crypto: globalThis.crypto });
  });

  afterEach(() => clearMocks());

  afterAll(() => vi.unstubAllGlobals());

  it("invokes a read by its name without arguments", async () => {
    const calls: [string, unknown][] = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return [];
    });
    await expect(new TauriTransport().read("list_library")).resolves.toEqual([]);
    expect(calls).toEqual([["list_library", {}]]);
  });

  it("invokes a call with its input under `input`", async () => {
    const calls: [string, unknown][] = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return VIEW;
    });
    await new TauriTransport().call("pause_download", { model: VIEW.repo });
    expect(calls).toEqual([["pause_download", { input: { model: VIEW.repo } }]]);
  });

  it("normalises a { code, message } rejection into a TransportError with that code", async () => {
    mockIPC(() => {
      throw { code: "hub_auth", message: "meta-llama/Llama-3 is gated" };
    });
    const err = await new TauriTransport().call("model_details", { model: "x/y" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect((err as Error).message).toBe("meta-llama/Llama-3 is gated");
    expect((err as TransportError).code).toBe("hub_auth");
  });

  it("passes a Channel to download_events and delivers its messages until unsubscribed", async () => {
    let channel: Channel<DownloadView> | undefined;
    mockIPC((cmd, args) => {
      if (cmd === "download_events") channel = (args as { channel: Channel<DownloadView> }).channel;
      return null;
    });
    const events: DownloadView[] = [];
    const stop = new TauriTransport().subscribe("download_events", (e) => events.push(e));
    expect(channel).toBeInstanceOf(Channel);
    const internals = (window as unknown as { __TAURI_INTERNALS__: Internals }).__TAURI_INTERNALS__;
    internals.runCallback(channel!.id, { index: 0, message: VIEW });
    internals.runCallback(channel!.id, { index: 1, message: { ...VIEW, downloaded: 20 } });
    stop();
    internals.runCallback(channel!.id, { index: 2, message: { ...VIEW, downloaded: 30 } });
    expect(events.map((e) => e.downloaded)).toEqual([10, 20]);
  });

  it("reports a stream that could not start", async () => {
    mockIPC(() => {
      throw { code: "internal", message: "no download manager" };
    });
    const errors: Error[] = [];
    new TauriTransport().subscribe("download_events", () => {}, (e) => errors.push(e));
    await vi.waitFor(() => expect(errors).toHaveLength(1));
    expect(errors[0]!.message).toBe("no download manager");
  });

  it("invokes server_status and reveal_model (app only)", async () => {
    const calls: [string, unknown][] = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return cmd === "server_status" ? RUNNING : null;
    });
    const transport = new TauriTransport();
    await expect(transport.serverStatus()).resolves.toEqual(RUNNING);
    await transport.revealModel({ model: "SmolLM2" });
    expect(calls[1]).toEqual(["reveal_model", { input: { model: "SmolLM2" } }]);
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

  it("reads OpenAI's nested error shape", () => {
    const err = toError({ error: { message: "Invalid API key", code: "invalid_api_key" } });
    expect(err.message).toBe("Invalid API key");
    expect((err as TransportError).code).toBe("invalid_api_key");
  });

  it("uses a rejected string as the message", () => {
    expect(toError("command runtime_info not found").message).toBe("command runtime_info not found");
  });

  it("never yields an empty or [object Object] message for unknown shapes", () => {
    expect(toError({ status: 7 }).message).toBe('Unexpected error: {"status":7}');
    expect(toError(undefined).message).toBe("Unexpected error: undefined");
  });
});
