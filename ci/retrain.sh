#!/usr/bin/env bash
# Retrain when the pipeline's definition changed, and report what moved.
#
#   ci/retrain.sh [--detect] BASE_REF
#
# BASE_REF is what the report compares against: the target branch of a pull request
# (`origin/main`), or on main the commit before the push (`HEAD~1` for a single commit).
#
# A change to params.yaml, dvc.yaml, src/, pipeline/ or the pinned dependencies
# (pyproject.toml, requirements.lock) between BASE_REF and HEAD means a retrain. `--detect`
# only answers: it prints `retrain=true|false` (also to $GITHUB_OUTPUT
# when set). Otherwise, when a retrain is needed, it runs `dvc repro` (with
# `--pull --allow-missing` when a DVC remote is configured), and writes a Markdown report to
# reports/retrain.md and to $GITHUB_STEP_SUMMARY when set: the params diff against BASE_REF,
# the metrics that moved beyond their noise against it (tolerances from reports/noise.json,
# `python -m wardrobe.noise compare`), this run against the committed metrics, the test
# metrics and the figures.
#
# Run from the project root with the project's environment on PATH (`make setup`).
set -euo pipefail

detect_only=false
if [[ "${1:-}" == "--detect" ]]; then
    detect_only=true
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: ci/retrain.sh [--detect] BASE_REF   (e.g. origin/main or HEAD~1)" >&2
    exit 2
fi
base="$1"
if ! base_commit=$(git rev-parse --verify --quiet "${base}^{commit}"); then
    echo "retrain: error: base ref '${base}' is not a commit here; fetch it" \
        "(actions/checkout with fetch-depth: 0) or pass another ref" >&2
    exit 2
fi

# What makes a retrain: the pipeline's params, stages and code.
watched=(params.yaml dvc.yaml src pipeline pyproject.toml requirements.lock)
changed=$(git diff --name-only "${base_commit}" HEAD -- "${watched[@]}")
retrain=false
[[ -n "${changed}" ]] && retrain=true

echo "retrain=${retrain}"
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    echo "retrain=${retrain}" >> "${GITHUB_OUTPUT}"
fi
if [[ "${detect_only}" == true ]]; then
    exit 0
fi

report=reports/retrain.md
mkdir -p reports
publish() {
    if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
        cat "${report}" >> "${GITHUB_STEP_SUMMARY}"
    fi
}

or_none() {  # the text, or the fallback when it is empty
    if [[ -n "$1" ]]; then echo "$1"; else echo "$2"; fi
}

short_base=$(git rev-parse --short "${base_commit}")
head=$(git rev-parse --short HEAD)
if [[ "${retrain}" == false ]]; then
    {
        echo "## Wardrobe: no retrain"
        echo
        echo "Nothing under ${watched[*]} changed between \`${base}\` (${short_base}) and" \
            "${head}, so the pipeline was not run."
    } > "${report}"
    publish
    echo "retrain: nothing under ${watched[*]} changed since ${base}; not retraining"
    exit 0
fi

echo "retrain: changed since ${base}:"
echo "${changed}" | sed 's/^/  /'

repro=(dvc repro)
if [[ -n "$(dvc remote list)" ]]; then
    # With a remote, a stage whose deps did not change is skipped even when its outputs are
    # not here, and a stage that runs first pulls the outputs it depends on: nothing is
    # recomputed or downloaded that this change does not need.
    repro+=(--pull --allow-missing)
    # Down, or refusing the keys, the remote stops the job now with one line, not after
    # DVC's minutes of retries.
    python -m wardrobe.remote check
fi

start=$(date +%s)
"${repro[@]}"
seconds=$(( $(date +%s) - start ))

# This run against the committed metrics. dvc.lock is not compared, because every training
# writes its own MLflow run id into models/*/run.json. Another machine's arithmetic moves the
# metrics within the noise measured between seeds (reports/noise.json); a change beyond it
# means the change was committed without its `dvc repro` results.
metrics=(reports/metrics.json reports/class_shares.json)
if git diff --quiet -- "${metrics[@]}"; then
    reproduced="The metrics (\`${metrics[*]}\`) match the committed ones."
else
    reproduced=$(python -m wardrobe.noise compare --base HEAD)
    reproduced+=$'\n\n'"Another machine's arithmetic moves metrics within their noise. Many"
    reproduced+=" beyond it (each tolerance lets 1% of chance differences through) mean the"
    reproduced+=" change was most likely committed without its \`dvc repro\` results: run"
    reproduced+=" \`make repro\` and commit dvc.lock and the metrics."
fi

# Separate assignments, so that a failing command stops the script (set -e).
params_diff=$(dvc params diff "${base}" --md)
moved=$(python -m wardrobe.noise compare --base "${base}")
metrics_diff=$(dvc metrics diff "${base}" --md)
table=$(python -m wardrobe.report)

tmp="${report}.tmp"
{
    echo "## Wardrobe retrain: ${head} against \`${base}\` (${short_base})"
    echo
    echo "\`dvc repro\` took ${seconds} s. Changed: $(echo "${changed}" | tr '\n' ' ')"
    echo
    echo "### Params that changed"
    echo
    or_none "${params_diff}" "No param changed."
    echo
    echo "### Metrics against the base"
    echo
    echo "${moved}"
    echo
    if [[ -n "${metrics_diff}" ]]; then
        echo "<details><summary>Every change, as <code>dvc metrics diff</code> gives it</summary>"
        echo
        echo "${metrics_diff}"
        echo
        echo "</details>"
        echo
    fi
    echo "### This run against the committed metrics"
    echo
    echo "${reproduced}"
    echo
    echo "### Test metrics of this run"
    echo
    echo "${table}"
    echo
    echo "### Figures"
    echo
    shopt -s nullglob
    figures=(reports/figures/*/*.png)
    if (( ${#figures[@]} )); then
        echo "In the \`reports\` artifact of this workflow run:"
        for f in "${figures[@]}"; do
            echo "- \`${f}\`"
        done
    else
        echo "None drawn: this change did not re-run the \`plots\` stage."
    fi
} > "${tmp}"
mv "${tmp}" "${report}"
publish
echo "retrain: report written to ${report}"
