#!/usr/bin/env bash
# pion-patches.sh — the unified diff of third_party/pion-turn (our patched copy of pion/turn)
# against pion/turn as released, the version its go.mod replace stands for. Prints the diff
# (paths a/… b/…, to apply with `patch -p1` inside a fresh copy of a newer release); with
# --check, fails unless the diff in third_party/pion-turn/PATCHES.md is that diff.
#
# The release comes from the module cache (`go mod download`, through the module proxy if
# it is not there yet). Left out on both sides: what the copy does not carry (examples/,
# e2e/, upstream CI and lint configuration) and PATCHES.md itself.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(awk '$1 == "github.com/pion/turn/v5" { print $2; exit }' go.mod)
upstream=$(go mod download -json "github.com/pion/turn/v5@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $upstream ]] || { echo "pion-patches: pion/turn $version not in the module cache" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$upstream" "$work/a"
chmod -R u+w "$work/a"
rm -rf "$work/a/examples" "$work/a/e2e" "$work/a/.github" "$work/a/.golangci.yml" "$work/a/.goreleaser.yml" \
	"$work/a/.gitignore" "$work/a/codecov.yml" "$work/a/renovate.json"
cp -r third_party/pion-turn "$work/b"
rm -f "$work/b/PATCHES.md"

diff=$(cd "$work" && { diff -ruN a b || true; } | sed -E 's/^(---|\+\+\+) ([^\t]*)\t.*/\1 \2/')
if [[ ${1:-} == --check ]]; then
	embedded=$(awk '/^```diff$/ { on = 1; next } /^```$/ { on = 0 } on' third_party/pion-turn/PATCHES.md)
	if [[ $embedded != "$diff" ]]; then
		echo "pion-patches: the diff in third_party/pion-turn/PATCHES.md is not the copy's diff against pion/turn $version; regenerate it with scripts/pion-patches.sh" >&2
		exit 1
	fi
	exit 0
fi
printf '%s\n' "$diff"
