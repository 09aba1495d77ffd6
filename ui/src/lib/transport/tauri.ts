// The desktop window's transport: Tauri commands of the same names as the operations,
// and a Tauri Channel for pushed updates.

import { Channel, invoke } from "@tauri-apps/api/core";
import type { Calls, Reads, Streams } from "../api/operations";
import type { ModelRequest } from "../api/ModelRequest";
import { toError } from "./errors";
import { parseServerStatus, type ServerStatus, type Transport, type Unsubscribe } from "./types";

async function run<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(command, args);
  } catch (reason) {
    throw toError(reason);
  }
}

export class TauriTransport implements Transport {
  readonly kind = "app" as const;

  read<K extends keyof Reads>(op: K): Promise<Reads[K]["output"]> {
    return run<Reads[K]["output"]>(op);
  }

  call<K extends keyof Calls>(op: K, input: Calls[K]["input"]): Promise<Calls[K]["output"]> {
    return run<Calls[K]["output"]>(op, { input });
  }

  subscribe<K extends keyof Streams>(
    op: K,
    onEvent: (event: Streams[K]["event"]) => void,
    onError?: (error: Error) => void,
  ): Unsubscribe {
    let open = true;
    // Rust keeps sending until the channel's receiver is gone; after unsubscribing the
    // page simply stops listening.
    const channel = new Channel<Streams[K]["event"]>((event) => {
      if (open) onEvent(event);
    });
    invoke(op, { channel }).catch((reason: unknown) => {
      if (open) onError?.(toError(reason));
    });
    return () => {
      open = false;
    };
  }

  async serverStatus(): Promise<ServerStatus> {
    return parseServerStatus(await run<unknown>("server_status"));
  }

  async revealModel(input: ModelRequest): Promise<void> {
    await run<unknown>("reveal_model", { input });
  }

  async launchAtLogin(): Promise<boolean> {
    return (await run<unknown>("launch_at_login")) === true;
  }

  async setLaunchAtLogin(enabled: boolean): Promise<boolean> {
    return (await run<unknown>("set_launch_at_login", { enabled })) === true;
  }

  async restartApp(): Promise<void> {
    await run<unknown>("restart_app");
  }
}
