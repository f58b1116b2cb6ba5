#!/usr/bin/env bash
# Debian packages the tests use: espeak-ng (real speech for the quality tests), chromium and its
# WebDriver (the web page and eval report tests). Installed when missing and this user can; otherwise
# a hint (outside CI those tests then skip; under CI=true they fail).
set -euo pipefail
missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >&2
else
  echo "not installed: ${missing[*]} (Debian: sudo apt-get install ${missing[*]}); their tests will skip" >&2
fi
