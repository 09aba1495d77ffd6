import { describe, expect, it } from "vitest";
import { settings } from "../../test/fixtures";
import { fieldNamed, isLoopback, problems, toDraft } from "./serverForm";

describe("the API server form's checks", () => {
  it("finds the setting Orchard's refusal names, whole words only", () => {
    expect(fieldNamed("memory_budget_percent must be between 1 and 100")).toBe("memory_budget_percent");
    expect(fieldNamed("invalid request body at port: invalid value: integer `70000`, expected u16")).toBe("port");
    expect(fieldNamed("host must not be empty")).toBe("host");
    expect(fieldNamed("refusing to serve without API keys: binding beyond localhost requires a key")).toBeNull();
    expect(fieldNamed("allowed_hosts takes addresses")).toBeNull();
    expect(fieldNamed("Orchard's database failed: disk I/O error")).toBeNull();
  });

  it("accepts what Orchard starts with, and says what it would refuse", () => {
    const ok = toDraft(settings().server);
    expect(problems(ok)).toEqual({});
    expect(problems({ ...ok, host: "::1", require_api_key: false })).toEqual({});
    expect(problems({ ...ok, host: "0.0.0.0" })).toEqual({});
    expect(problems({ ...ok, host: "studio.local" }).host).toMatch(/IP address/);
    expect(problems({ ...ok, host: "300.1.1.1" }).host).toMatch(/IP address/);
    expect(problems({ ...ok, host: "0.0.0.0", require_api_key: false }).require_api_key).toMatch(/requires a key/);
    expect(problems({ ...ok, port: 0 }).port).toBe("Port: enter a whole number from 1 to 65535.");
    expect(problems({ ...ok, port: null }).port).toMatch(/whole number/);
    expect(problems({ ...ok, memory_budget_percent: 100.5 }).memory_budget_percent).toMatch(/from 1 to 100/);
    expect(problems({ ...ok, idle_ttl_minutes: 0 })).toEqual({});
    expect(problems({ ...ok, queue_capacity: 0 }).queue_capacity).toBe("Queue size: enter a whole number 1 or more.");
    expect(isLoopback("127.0.0.1") && isLoopback("localhost") && !isLoopback("0.0.0.0")).toBe(true);
  });
});
