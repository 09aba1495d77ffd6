// Profiles: named ways to serve a Library model (system prompt, sampling defaults, limits,
// keep loaded). A profile's name is a model name on the API port. Listed, created, edited
// (and renamed), deleted.

import type { Profile } from "../api/Profile";
import { toFailure, type Failure, type Transport } from "../transport";

export type ProfilesOptions = {
  /** The profiles changed: the tiles that name them change too. */
  onChange?: () => void;
};

const byName = (a: Profile, b: Profile) =>
  a.name.toLowerCase().localeCompare(b.name.toLowerCase()) || a.name.localeCompare(b.name);

export class ProfilesStore {
  status = $state<"loading" | "ready" | "error">("loading");
  profiles = $state<Profile[]>([]);
  failure = $state<Failure | null>(null);
  /** A create or an edit on its way. */
  saving = $state(false);
  /** Why the last create or edit was refused. */
  saveFailure = $state<Failure | null>(null);
  /** Deletes in flight, by name. */
  deleting = $state<Record<string, boolean>>({});
  /** The last failed delete per name. */
  errors = $state<Record<string, Failure>>({});

  readonly #transport: Transport;
  readonly #onChange: () => void;

  constructor(transport: Transport, options: ProfilesOptions = {}) {
    this.#transport = transport;
    this.#onChange = options.onChange ?? (() => {});
  }

  async load(): Promise<void> {
    if (this.status !== "ready") this.status = "loading";
    try {
      this.profiles = [...(await this.#transport.read("list_profiles"))].sort(byName);
      this.failure = null;
      this.status = "ready";
    } catch (reason) {
      this.failure = toFailure(reason);
      // Profiles already shown stay, with a note that they could not be read again.
      if (this.status !== "ready") this.status = "error";
    }
  }

  named(name: string): Profile | undefined {
    return this.profiles.find((p) => p.name === name);
  }

  /** Creates a profile; null when Orchard refused it (`saveFailure` says why). */
  create(profile: Profile): Promise<Profile | null> {
    return this.#save(null, () => this.#transport.call("create_profile", profile));
  }

  /** Replaces the profile called `name` (renaming it when `profile` has another name). */
  update(name: string, profile: Profile): Promise<Profile | null> {
    return this.#save(name, () => this.#transport.call("update_profile", { name, profile }));
  }

  clearSaveFailure(): void {
    this.saveFailure = null;
  }

  async remove(name: string): Promise<boolean> {
    if (this.deleting[name]) return false;
    this.deleting[name] = true;
    delete this.errors[name];
    try {
      this.profiles = [...(await this.#transport.call("delete_profile", { name }))].sort(byName);
      this.status = "ready";
      this.#onChange();
      return true;
    } catch (reason) {
      this.errors[name] = toFailure(reason);
      return false;
    } finally {
      delete this.deleting[name];
    }
  }

  async #save(replacing: string | null, run: () => Promise<Profile>): Promise<Profile | null> {
    if (this.saving) return null;
    this.saving = true;
    this.saveFailure = null;
    try {
      const saved = await run();
      const rest = this.profiles.filter((p) => p.name !== replacing && p.name !== saved.name);
      this.profiles = [...rest, saved].sort(byName);
      this.status = "ready";
      this.#onChange();
      return saved;
    } catch (reason) {
      this.saveFailure = toFailure(reason);
      return null;
    } finally {
      this.saving = false;
    }
  }
}
