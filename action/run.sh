#!/usr/bin/env bash
# The steps of the hecate-agent GitHub Action (action.yml), runnable anywhere:
#   1. `validate --format github`: ::error annotations on the pull request's files;
#   2. `validate --format sarif` into a file, for github/codeql-action/upload-sarif;
#   3. with a base revision: `plan --against BASE --format markdown` into a file, for a sticky comment.
# Inputs (environment): HECATE_PATH (spec folder, default .), HECATE_BASE (revision to plan against; empty: no
# plan), HECATE_OUT (folder for the files, default $RUNNER_TEMP/hecate-agent), HECATE_AGENT (the command,
# default hecate-agent). Outputs go to $GITHUB_OUTPUT when it is set: validate-exit-code, sarif-file,
# plan-file, plan-exit-code, markdown. The plan is also added to $GITHUB_STEP_SUMMARY when that is set.
# Exit status: 1 when the specs are invalid or the plan failed; 0 otherwise (a plan with changes is success).
set -uo pipefail

path=${HECATE_PATH:-.}
base=${HECATE_BASE:-}
out=${HECATE_OUT:-${RUNNER_TEMP:-/tmp}/hecate-agent}
agent=${HECATE_AGENT:-hecate-agent}
# GitHub refuses comments over 65,536 characters; the whole plan stays in plan-file and the job summary.
max_comment=60000

mkdir -p "$out"
sarif="$out/hecate-agent.sarif"
plan_md="$out/plan.md"

output() {  # name value: a (possibly multi-line) step output
  [ -n "${GITHUB_OUTPUT:-}" ] || return 0
  local delimiter
  delimiter="hecate_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  { printf '%s<<%s\n' "$1" "$delimiter"; printf '%s\n' "$2"; printf '%s\n' "$delimiter"; } >>"$GITHUB_OUTPUT"
}

echo "::group::hecate-agent validate $path"
"$agent" validate "$path" --format github
validate_rc=$?
echo "::endgroup::"
"$agent" validate "$path" --format sarif >"$sarif"
sarif_rc=$?
if [ "$sarif_rc" -gt 1 ]; then
  echo "::error title=hecate-agent::validate --format sarif failed (exit $sarif_rc)"
  validate_rc=$sarif_rc
fi
output validate-exit-code "$validate_rc"
output sarif-file "$sarif"

plan_rc=""
if [ -n "$base" ]; then
  # A shallow checkout (actions/checkout's default) does not have the base commit: fetch just that one.
  if ! git -C "$path" cat-file -e "$base^{commit}" 2>/dev/null; then
    git -C "$path" fetch --quiet --no-tags --depth=1 origin "$base" || true
  fi
  "$agent" plan "$path" --against "$base" --format markdown >"$plan_md" 2>"$out/plan.stderr"
  plan_rc=$?
  if [ "$plan_rc" -ne 0 ] && [ "$plan_rc" -ne 2 ]; then
    {
      echo "### hecate-agent plan against \`$base\` failed"
      echo
      if [ "$validate_rc" -ne 0 ]; then
        echo "The specs in this pull request do not validate; the problems are annotated on the changed files."
        echo
      fi
      echo '```'
      head -c 20000 "$out/plan.stderr"
      echo '```'
    } >"$plan_md"
  fi
  cat "$out/plan.stderr" >&2
  markdown=$(cat "$plan_md")
  if [ "${#markdown}" -gt "$max_comment" ]; then
    markdown="${markdown:0:$max_comment}"$'\n\n'"*(cut here: the whole plan is in the job summary)*"
  fi
  output plan-file "$plan_md"
  output plan-exit-code "$plan_rc"
  output markdown "$markdown"
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$plan_md" >>"$GITHUB_STEP_SUMMARY"
  fi
  echo "hecate-agent: plan against $base written to $plan_md (exit $plan_rc: 0 no changes, 2 changes, 1 error)"
fi

echo "hecate-agent: SARIF written to $sarif"
if [ "$validate_rc" -ne 0 ] || { [ -n "$plan_rc" ] && [ "$plan_rc" -ne 0 ] && [ "$plan_rc" -ne 2 ]; }; then
  exit 1
fi
exit 0
