// The look: System (follows the system's light/dark setting), Light or Dark. The choice is
// kept in localStorage; the shell applies it as `data-theme` on <html>, which app.css reads.

export type ThemeChoice = "system" | "light" | "dark";
export type Theme = "light" | "dark";

export const THEME_STORAGE = "orchard.theme";
export const THEME_CHOICES: readonly ThemeChoice[] = ["system", "light", "dark"];

const DARK_QUERY = "(prefers-color-scheme: dark)";

/** The parts of `window` the theme uses; each may be missing (tests, locked-down storage). */
export type ThemeHost = {
  localStorage?: Pick<Storage, "getItem" | "setItem">;
  matchMedia?: (query: string) => MediaQueryList;
  document?: Document;
};

function defaultHost(): ThemeHost {
  return typeof window === "undefined" ? {} : (window as unknown as ThemeHost);
}

/** The stored choice; System when none (or storage cannot be read). */
export function readThemeChoice(host: ThemeHost = defaultHost()): ThemeChoice {
  try {
    const stored = host.localStorage?.getItem(THEME_STORAGE);
    return THEME_CHOICES.includes(stored as ThemeChoice) ? (stored as ThemeChoice) : "system";
  } catch {
    return "system";
  }
}

function systemIsDark(host: ThemeHost): boolean {
  return typeof host.matchMedia === "function" && host.matchMedia(DARK_QUERY).matches;
}

export function resolveTheme(choice: ThemeChoice, systemDark: boolean): Theme {
  return choice === "system" ? (systemDark ? "dark" : "light") : choice;
}

/** Sets the page's colors (and native controls') to a theme. */
export function applyTheme(theme: Theme, host: ThemeHost = defaultHost()): void {
  const root = host.document?.documentElement;
  if (!root) return;
  root.dataset.theme = theme;
  root.style.colorScheme = theme;
}

export class ThemeStore {
  choice = $state<ThemeChoice>("system");
  /** What the system prefers, kept current while started. */
  systemDark = $state(false);

  readonly #host: ThemeHost;

  constructor(host: ThemeHost = defaultHost()) {
    this.#host = host;
    this.choice = readThemeChoice(host);
    this.systemDark = systemIsDark(host);
  }

  get theme(): Theme {
    return resolveTheme(this.choice, this.systemDark);
  }

  /** Applies the theme and follows the system's setting; returns what stops following. */
  start(): () => void {
    this.#apply();
    const query = typeof this.#host.matchMedia === "function" ? this.#host.matchMedia(DARK_QUERY) : null;
    if (!query) return () => {};
    const onChange = (event: MediaQueryListEvent) => {
      this.systemDark = event.matches;
      this.#apply();
    };
    query.addEventListener("change", onChange);
    return () => query.removeEventListener("change", onChange);
  }

  set(choice: ThemeChoice): void {
    this.choice = choice;
    try {
      this.#host.localStorage?.setItem(THEME_STORAGE, choice);
    } catch {
      // Storage may be full or disabled: the choice still holds until the window closes.
    }
    this.#apply();
  }

  #apply(): void {
    applyTheme(this.theme, this.#host);
  }
}
