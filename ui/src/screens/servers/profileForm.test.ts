import { describe, expect, it } from "vitest";
import { profile } from "../../test/fixtures";
import { copyName, keyDefaults, problems, refusedField } from "./profileForm";

describe("the profile form's rules", () => {
  it("names a copy '<name> copy', then numbers it", () => {
    expect(copyName("coder", ["coder"])).toBe("coder copy");
    expect(copyName("coder", ["coder", "coder copy", "coder copy 2"])).toBe("coder copy 3");
  });

  it("finds the field a refusal names, with the field's label", () => {
    expect(refusedField({ message: "top_p: must be between 0 and 1", code: "invalid_input" })).toEqual({
      key: "top_p",
      message: "Top P: must be between 0 and 1",
    });
    expect(refusedField({ message: 'a profile named "x" already exists', code: "conflict" })).toEqual({
      key: "name",
      message: 'Name: a profile named "x" already exists',
    });
    // Not a field of a profile, and not a name conflict: said under the form.
    expect(refusedField({ message: "weights: file missing", code: "internal" })).toBeNull();
    expect(refusedField({ message: "database is locked", code: "conflict" })).toBeNull();
  });

  it("takes top_p in (0, 1] and min_p in [0, 1), as the sampler does", () => {
    const context = { models: [], otherProfiles: [] };
    expect(problems(profile({ top_p: 0, min_p: 1 }), context)).toEqual({
      top_p: "Top P: more than 0 and at most 1, or empty for the default.",
      min_p: "Min P: at least 0 and less than 1, or empty for the default.",
    });
    expect(problems(profile({ top_p: 1, min_p: 0 }), context)).toEqual({});
  });

  it("counts a name's characters as Orchard does (code points), up to 64", () => {
    const context = { models: [], otherProfiles: [] };
    expect(problems(profile({ name: "🍎".repeat(64) }), context).name).toBeUndefined();
    expect(problems(profile({ name: "🍎".repeat(65) }), context).name).toBe("Name: at most 64 characters.");
    expect(problems(profile({ name: "   " }), context).name).toBe("Name: enter a name for the profile.");
  });

  it("shows an idle time-to-live only when it is not the setting's and keep loaded is off", () => {
    expect(keyDefaults(profile({ idle_ttl_minutes: 0 }))).toEqual([]);
    expect(keyDefaults(profile({ idle_ttl_minutes: 5, keep_loaded: true }))).toEqual(["Keep loaded"]);
    expect(keyDefaults(profile({ idle_ttl_minutes: 1500 }))).toEqual(["Unloads after 1,500 min idle"]);
  });
});
