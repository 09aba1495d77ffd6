// A profile as the form edits it: the fields, their labels and limits (those Orchard checks
// in crates/core/src/profiles.rs), what the page can check before sending, and which field
// a refusal from Orchard names ("temperature: must be between 0 and 2 ...").

import type { Profile } from "../../lib/api/Profile";
import type { Failure } from "../../lib/transport";

/** The form's values: a number field left empty is null, "the model's or request's default". */
export type ProfileDraft = Profile;

export type NumberKey =
  | "temperature"
  | "top_p"
  | "top_k"
  | "min_p"
  | "repetition_penalty"
  | "max_tokens"
  | "context_length"
  | "idle_ttl_minutes";

export type NumberField = {
  key: NumberKey;
  label: string;
  min: number;
  max: number;
  /** Whole numbers only (Orchard stores these as unsigned integers). */
  integer: boolean;
  /** The bound itself is refused (as the sampler takes top_p in (0, 1] and min_p in [0, 1)). */
  minExclusive?: boolean;
  maxExclusive?: boolean;
  step: number;
  hint: string;
  /** What an empty field means, said in the problem message. */
  empty: string;
};

/** The largest u32, the bound of Orchard's whole-number fields. */
const U32_MAX = 4_294_967_295;
/** crates/store's MAX_IDLE_TTL_MINUTES: a year. */
export const MAX_IDLE_TTL_MINUTES = 525_600;

export const NUMBER_FIELDS: NumberField[] = [
  {
    key: "temperature",
    label: "Temperature",
    min: 0,
    max: 2,
    integer: false,
    step: 0.05,
    hint: "0 always picks the likeliest token; higher is more varied.",
    empty: "the default",
  },
  {
    key: "top_p",
    label: "Top P",
    min: 0,
    max: 1,
    integer: false,
    minExclusive: true,
    step: 0.01,
    hint: "Sample from the likeliest tokens that together reach this probability; 1 keeps every token.",
    empty: "the default",
  },
  {
    key: "top_k",
    label: "Top K",
    min: 0,
    max: U32_MAX,
    integer: true,
    step: 1,
    hint: "Sample from this many likeliest tokens; 0 is off.",
    empty: "the default",
  },
  {
    key: "min_p",
    label: "Min P",
    min: 0,
    max: 1,
    integer: false,
    maxExclusive: true,
    step: 0.01,
    hint: "Drop tokens less likely than this share of the likeliest one; 0 is off.",
    empty: "the default",
  },
  {
    key: "repetition_penalty",
    label: "Repetition penalty",
    min: 0.5,
    max: 2,
    integer: false,
    step: 0.05,
    hint: "Above 1 makes repeating recent tokens less likely.",
    empty: "the default",
  },
  {
    key: "max_tokens",
    label: "Max tokens",
    min: 1,
    max: U32_MAX,
    integer: true,
    step: 1,
    hint: "Used when a request doesn't say how many tokens it wants.",
    empty: "no limit",
  },
  {
    key: "context_length",
    label: "Context length",
    min: 16,
    max: U32_MAX,
    integer: true,
    step: 1,
    hint: "Longer prompts are refused; the model's own limit applies too.",
    empty: "the model's",
  },
  {
    key: "idle_ttl_minutes",
    label: "Idle time-to-live (minutes)",
    min: 0,
    max: MAX_IDLE_TTL_MINUTES,
    integer: true,
    step: 1,
    hint: "Unload the model after this long unused; empty uses the API server's setting.",
    empty: "the API server's setting",
  },
];

export type FieldKey = keyof Profile;

/** Every field's label, for messages that name a field. */
export const LABELS: Record<FieldKey, string> = {
  name: "Name",
  model: "Model",
  description: "Description",
  system_prompt: "System prompt",
  keep_loaded: "Keep loaded",
  ...(Object.fromEntries(NUMBER_FIELDS.map((f) => [f.key, f.label])) as Record<NumberKey, string>),
};

export const MAX_NAME_CHARS = 64;

export function emptyDraft(model = ""): ProfileDraft {
  return {
    name: "",
    model,
    description: "",
    system_prompt: "",
    temperature: null,
    top_p: null,
    top_k: null,
    min_p: null,
    repetition_penalty: null,
    max_tokens: null,
    context_length: null,
    idle_ttl_minutes: null,
    keep_loaded: false,
  };
}

export function toDraft(profile: Profile): ProfileDraft {
  return { ...profile };
}

/** "<name> copy", or "<name> copy 2" and so on when that name is taken. */
export function copyName(name: string, taken: readonly string[]): string {
  const base = `${name} copy`;
  if (!taken.includes(base)) return base;
  let n = 2;
  while (taken.includes(`${base} ${n}`)) n += 1;
  return `${base} ${n}`;
}

/** A profile's form prefilled as a new profile with another name. */
export function duplicateDraft(profile: Profile, taken: readonly string[]): ProfileDraft {
  return { ...profile, name: copyName(profile.name, taken) };
}

/** Code points, as Rust's `chars().count()` counts them. */
function charCount(text: string): number {
  return [...text].length;
}

export type Context = {
  /** The Library's model ids: a profile may not be named like one. */
  models: readonly string[];
  /** The other profiles' names (the one being edited left out). */
  otherProfiles: readonly string[];
};

export type Problems = Partial<Record<FieldKey, string>>;

/** What is wrong with each field, checked as Orchard checks it. */
export function problems(draft: ProfileDraft, context: Context): Problems {
  const found: Problems = {};
  const name = draft.name.trim();
  if (!name) found.name = "Name: enter a name for the profile.";
  else if (charCount(name) > MAX_NAME_CHARS) found.name = `Name: at most ${MAX_NAME_CHARS} characters.`;
  else if (name.includes("/")) found.name = "Name: no '/', so that it never looks like a Hugging Face model.";
  else if (context.models.includes(name)) {
    found.name = `Name: “${name}” is a model in your Library; give the profile a name of its own.`;
  } else if (context.otherProfiles.includes(name)) found.name = `Name: a profile named “${name}” already exists.`;

  if (!draft.model.trim()) found.model = "Model: choose the Library model this profile serves.";

  for (const field of NUMBER_FIELDS) {
    const value = draft[field.key];
    if (value === null) continue;
    const ok =
      typeof value === "number" &&
      Number.isFinite(value) &&
      (field.minExclusive ? value > field.min : value >= field.min) &&
      (field.maxExclusive ? value < field.max : value <= field.max) &&
      (!field.integer || Number.isInteger(value));
    if (!ok) found[field.key] = rangeMessage(field);
  }
  return found;
}

function rangeMessage(field: NumberField): string {
  if (!field.integer) {
    const low = `${field.minExclusive ? "more than" : "at least"} ${field.min}`;
    const high = `${field.maxExclusive ? "less than" : "at most"} ${field.max}`;
    const range = field.minExclusive || field.maxExclusive ? `${low} and ${high}` : `from ${field.min} to ${field.max}`;
    return `${field.label}: ${range}, or empty for ${field.empty}.`;
  }
  const range = field.max === U32_MAX ? `${field.min} or more` : `from ${field.min} to ${field.max}`;
  return `${field.label}: a whole number ${range}, or empty for ${field.empty}.`;
}

/** The profile to send, once `problems` found none. */
export function toProfile(draft: ProfileDraft): Profile {
  return {
    ...draft,
    name: draft.name.trim(),
    model: draft.model.trim(),
  };
}

const KEYS = Object.keys(LABELS) as FieldKey[];

/**
 * The field a refusal from Orchard names, and its message as the form shows it there:
 * "temperature: must be between 0 and 2" is the Temperature field's. A profile name that
 * is already taken (409, "a profile named ... already exists") is the Name field's.
 */
export function refusedField(failure: Failure): { key: FieldKey; message: string } | null {
  const named = failure.message.match(/^([a-z_]+):\s*([\s\S]*)$/);
  const key = named?.[1] as FieldKey | undefined;
  if (named && key && KEYS.includes(key)) return { key, message: `${LABELS[key]}: ${named[2]}` };
  if (failure.code === "conflict" && /profile named/.test(failure.message)) {
    return { key: "name", message: `Name: ${failure.message}` };
  }
  return null;
}

/** The few defaults a list shows of a profile, as "Temperature 0.7". */
export function keyDefaults(profile: Profile): string[] {
  const shown: string[] = [];
  const count = (n: number) => n.toLocaleString("en-US");
  if (profile.temperature !== null) shown.push(`Temperature ${profile.temperature}`);
  if (profile.top_p !== null) shown.push(`Top P ${profile.top_p}`);
  if (profile.top_k !== null) shown.push(`Top K ${profile.top_k}`);
  if (profile.min_p !== null) shown.push(`Min P ${profile.min_p}`);
  if (profile.repetition_penalty !== null) shown.push(`Repetition penalty ${profile.repetition_penalty}`);
  if (profile.max_tokens !== null) shown.push(`Max tokens ${count(profile.max_tokens)}`);
  if (profile.context_length !== null) shown.push(`Context ${count(profile.context_length)} tokens`);
  // Keep loaded wins over any idle time-to-live; 0 means the API server's setting.
  if (profile.keep_loaded) shown.push("Keep loaded");
  else if (profile.idle_ttl_minutes) shown.push(`Unloads after ${count(profile.idle_ttl_minutes)} min idle`);
  return shown;
}
