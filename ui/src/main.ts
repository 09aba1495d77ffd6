import { mount } from "svelte";
import App from "./App.svelte";
import { applyTheme, readThemeChoice, resolveTheme } from "./lib/stores/theme.svelte";
import "./app.css";

// The chosen theme before the first paint, so a dark window never flashes light.
applyTheme(resolveTheme(readThemeChoice(), window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false));

const target = document.getElementById("app");
if (!target) throw new Error("Orchard: #app element missing from index.html");

export default mount(App, { target });
