#!/usr/bin/env bash
# Regenerate every golden fixture under tests/fixtures/ from the real reference
# implementations (tensorflow-addons 0.23 and pytorch-metric-learning 2.9).
#
#   bash tools/make_fixtures.sh          # builds .venv-tfa / .venv-pml if needed, then both
#   bash tools/make_fixtures.sh tfa      # only the tensorflow-addons fixtures
#   bash tools/make_fixtures.sh pml      # only the pytorch-metric-learning fixtures
#
# The outputs are deterministic: rerunning on the same package versions leaves git clean.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(tfa pml)

bash tools/make_reference_envs.sh "${targets[@]}"

for t in "${targets[@]}"; do
    case "$t" in
        tfa)
            .venv-tfa/bin/python tools/fixtures_tfa.py
            .venv-tfa/bin/python tools/fixtures_tfa_pairs.py
            ;;
        pml)
            .venv-pml/bin/python tools/fixtures_pml.py
            .venv-pml/bin/python tools/fixtures_pml_clustering.py
            .venv-pml/bin/python tools/fixtures_pml_pair_losses.py
            .venv-pml/bin/python tools/fixtures_pml_softmax_losses.py
            .venv-pml/bin/python tools/fixtures_pml_proxy_losses.py  # reads pml_inputs.npz
            ;;
        *) echo "unknown target '$t' (expected tfa or pml)" >&2; exit 2 ;;
    esac
done

ls -l tests/fixtures/
du -ch tests/fixtures/* | tail -n 1
