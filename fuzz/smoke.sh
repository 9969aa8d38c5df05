#!/usr/bin/env bash
# Runs every fuzz target for a short while (SECONDS_EACH, default 20) from the committed seeds.
# New inputs go to fuzz/corpus/<target> (not committed); a crash stops the script non-zero and
# leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${SECONDS_EACH:-20}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes -Z sanitizer flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
for target in request_head response_head chunked config path l4_preamble; do
  mkdir -p "corpus/$target"
  echo "fuzz: $target for ${secs}s"
  log="$(mktemp)"
  if ! cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- -max_total_time="$secs" >"$log" 2>&1; then
    grep -E "ERROR|panicked|SUMMARY|Test unit" "$log" | head -20 || tail -20 "$log"
    echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/"
    exit 1
  fi
  grep -E "^Done" "$log" || true
  rm -f "$log"
done
