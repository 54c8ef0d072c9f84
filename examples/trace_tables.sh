#!/usr/bin/env bash
# Replays the traces in examples/traces/ through capstan's recommended policy
# (config/examples/recommended.toml, target `web`), the three baselines and the clairvoyant,
# and prints one
# Markdown table per trace (the tables of docs/benchmarks.md), each row with the command
# that reproduces it.
#
#   cargo build --release && examples/trace_tables.sh [OUT_DIR]
#
# Needs python3 (to read the JSON summaries) and /usr/bin/time (GNU time, for the CPU
# time of each replay). Outputs (CSV, JSON, SVG) go to OUT_DIR
# (default: target/trace-tables).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CAPSTAN:-target/release/capstan}
out=${1:-target/trace-tables}
mkdir -p "$out"
cfg=config/examples/recommended.toml

# name, file, load scale: each trace scaled so that its peak needs a handful to a few
# dozen units of 100 requests/s.
traces=(
  "nasa examples/traces/nasa_http_1995_1min.csv 150"
  "wikipedia examples/traces/wikipedia_all_projects_1h.csv 0.25"
  "azure examples/traces/azure_llm_code_1s.csv 40"
)
# target:scaler; the baselines track the `web` target's target-tracking policy (90 per unit).
scalers=(web:policies web-lean:policies web:aws-target-tracking web:hpa web:static-peak web:clairvoyant)

for t in "${traces[@]}"; do
  read -r name file scale <<<"$t"
  echo
  echo "### $name (\`$file\`, load x$scale, 100 requests/s per unit)"
  echo
  echo "| scaler | under-provisioned bins | requests over capacity | unit-hours | ratio to oracle | ratio to clairvoyant | scaling actions (out / in) | max desired | replay CPU time |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  cmds=()
  for ts in "${scalers[@]}"; do
    target=${ts%%:*}
    s=${ts#*:}
    extra=()
    [ "$s" = policies ] || extra=(--baseline "$s")
    [ "$s" = policies ] && s=$target
    cmd=("$bin" simulate --config "$cfg" --target "$target" --trace "$file" --load-scale "$scale"
      --unit-capacity 100 --out "$out/$name-$s.csv" --plot "$out/$name-$s.svg" "${extra[@]}")
    # CPU time (user + system) of the replay: wall-clock time on a shared machine
    # measures the other jobs too.
    /usr/bin/time -f "%U %S" -o "$out/$name-$s.time" "${cmd[@]}" >"$out/$name-$s.txt" 2>"$out/$name-$s.err"
    label=$s
    [ "$s" = web ] && label="**capstan recommended** (\`web\`: predictive + target tracking)"
    [ "$s" = web-lean ] && label="capstan, run hotter (\`web-lean\`)"
    [ "$s" = clairvoyant ] && label="clairvoyant (the peak need of the next start-up delay, asked that far ahead; not causal)"
    python3 - "$out/$name-$s.json" "$label" "$out/$name-$s.time" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
label = sys.argv[2]
user, system = map(float, open(sys.argv[3]).read().split()[-2:])
print(f"| {label} | {100 * s['under_provisioned_share']:.2f}% ({s['under_provisioned_bins']}) "
      f"| {100 * s['over_capacity_share']:.3f}% | {s['unit_hours']:.1f} | {s['ratio_to_oracle']:.2f} "
      f"| {s['ratio_to_clairvoyant']:.2f} "
      f"| {s['scaling_actions']} ({s['scale_outs']} / {s['scale_ins']}) | {s['max_desired']} "
      f"| {user + system:.2f} s |")
EOF
    cmds+=("${cmd[*]}")
  done
  python3 - "$out/$name-web.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"| oracle (ceil(load / 100) ready every bin, at least min; not causal) | 0.00% (0) | 0.000% "
      f"| {s['oracle_unit_hours']:.1f} | 1.00 | - | - | {s['peak_needed']} | - |")
EOF
  echo
  echo "Commands, one per row:"
  echo
  echo '```sh'
  for c in "${cmds[@]}"; do echo "$c"; done
  echo '```'
done
