#!/usr/bin/env bash
# Point DVC's default remote at $DVC_REMOTE_URL (a repository secret) in .dvc/config.local, with the
# plugin and credentials its scheme needs. Prints "remote=true" or "remote=false" for $GITHUB_OUTPUT:
# without the secret (a fork's pull request) the workflow reproduces everything, as before.
set -euo pipefail
BIN=${BIN:-.venv/bin}

if [ -z "${DVC_REMOTE_URL:-}" ]; then
  echo "no DVC_REMOTE_URL secret: no remote, every stage runs" >&2
  echo "remote=false"
  exit 0
fi

scheme=${DVC_REMOTE_URL%%://*}
case "$scheme" in  # DVC's extra of the same name (gs: dvc[gs]) installs the scheme's plugin
  s3 | gs | azure | ssh) ;;
  *) echo "DVC_REMOTE_URL: unsupported scheme '$scheme' (s3://, gs://, azure:// or ssh://)" >&2; exit 2 ;;
esac
# Pinned to the installed dvc, so that the extra adds its plugin and changes nothing else.
version=$("$BIN/python" -c "import dvc; print(dvc.__version__)")
"$BIN/python" -m pip install --quiet "dvc[$scheme]==$version" >&2

"$BIN/dvc" remote add --local --force --default ci "$DVC_REMOTE_URL" >&2
# Credentials into .dvc/config.local (never committed): GCS reads a key file, SSH a private key.
if [ -n "${AZURE_STORAGE_CONNECTION_STRING:-}" ]; then
  "$BIN/dvc" remote modify --local ci connection_string "$AZURE_STORAGE_CONNECTION_STRING" >&2
fi
if [ -n "${GCP_SERVICE_ACCOUNT_JSON:-}" ]; then
  key="$RUNNER_TEMP/gcs-key.json"
  printf '%s' "$GCP_SERVICE_ACCOUNT_JSON" > "$key"
  "$BIN/dvc" remote modify --local ci credentialpath "$key" >&2
fi
if [ -n "${DVC_SSH_KEY:-}" ]; then
  key="$RUNNER_TEMP/dvc-ssh-key"
  (umask 077 && printf '%s\n' "$DVC_SSH_KEY" > "$key")
  "$BIN/dvc" remote modify --local ci keyfile "$key" >&2
fi
# S3 reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment itself.
echo "remote=true"
