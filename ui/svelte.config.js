import { vitePreprocess } from "@sveltejs/vite-plugin-svelte";

export default {
  // Svelte 5 understands TypeScript natively; this also covers <style lang="…">.
  preprocess: vitePreprocess(),
};
