#!/usr/bin/env bash
# Fetches the tree-sitter grammars of the code index from npm and unpacks them as meson
# subprojects. For each grammar of subprojects/grammars.lock (name, version, ABI, integrity):
#
#   1. `npm pack NAME@VERSION` into subprojects/packagecache/ (skipped when the tarball there
#      already has the locked integrity: no network needed once the cache is filled)
#   2. the tarball's sha512 must be the locked integrity
#   3. every src/parser.c in it must define LANGUAGE_VERSION 13 or 14, the ABIs that Debian 12's
#      libtree-sitter 0.20.7 reads, and the one locked
#   4. only what the build needs is unpacked into subprojects/NAME/, beside its committed
#      meson.build: src/parser.c, src/scanner.c, src/tree_sitter/*.h (of each grammar in the
#      package: tree-sitter-typescript holds typescript/ and tsx/, sharing common/*.h),
#      queries/*.scm and LICENSE
#
#   bash tools/grammars.sh
#
# Idempotent: a grammar whose folder holds what the lock names (the stamp file .grammar there)
# is left alone, so a run with nothing to do only reads nine small files. tools/setup.sh runs
# this script; the build (meson option code_index) uses the unpacked grammars when they are
# there and builds without the code index when they are not.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob

readonly LOCK=subprojects/grammars.lock
readonly CACHE=subprojects/packagecache
readonly STAMP=.grammar

# The grammar being worked on, named by any failure; the temporary folder to remove at the end.
current=""
work=""
reported=false
fail() {
  echo "grammars: $*" >&2
  reported=true
  exit 1
}
on_exit() {
  local status=$?
  if [[ -n $work ]]; then rm -rf "$work"; fi
  if [[ $status -ne 0 && $reported == false && -n $current ]]; then
    echo "grammars: $current: failed (the message above says why)" >&2
  fi
}
trap on_exit EXIT

# npm's form of a file's digest: sha512-<base64 of the 64 bytes>.
integrity_of() {  # file
  local hex
  hex=$(sha512sum "$1" | cut -d' ' -f1)
  # shellcheck disable=SC2001  # each pair of hex digits becomes \xHH, which printf %b turns into a byte
  printf 'sha512-%s' "$(printf '%b' "$(sed 's/../\\x&/g' <<<"$hex")" | base64 -w0)"
}

# Fetches NAME@VERSION into the cache unless the tarball there already has INTEGRITY.
fetch() {  # name version integrity tarball
  local name=$1 version=$2 integrity=$3 tarball=$4
  if [[ -f $tarball && $(integrity_of "$tarball") == "$integrity" ]]; then
    return 0
  fi
  command -v npm >/dev/null ||
    fail "$name@$version: npm is missing; run bash tools/setup.sh (it installs nodejs and npm)"
  echo "grammars: fetching $name@$version from the npm registry"
  mkdir -p "$CACHE"
  rm -f "$tarball"
  local log
  if ! log=$(cd "$CACHE" && npm pack --silent "$name@$version" </dev/null 2>&1); then
    echo "$log" >&2
    fail "$name@$version: npm pack failed (the npm registry must be reachable until $tarball is cached)"
  fi
  [[ -f $tarball ]] || fail "$name@$version: npm pack did not write $tarball"
  local got
  got=$(integrity_of "$tarball")
  if [[ $got != "$integrity" ]]; then
    rm -f "$tarball"
    fail "$name@$version: the tarball from npm has integrity $got, but $LOCK expects $integrity"
  fi
}

# Copies what the build needs from the unpacked package PKG into STAGE, checking each parser's ABI.
select_files() {  # name@version abi pkg stage
  local what=$1 abi=$2 pkg=$3 stage=$4
  local parser dir found parsers=()
  for parser in "$pkg"/src/parser.c "$pkg"/*/src/parser.c; do
    if [[ -f $parser ]]; then parsers+=("$parser"); fi
  done
  [[ ${#parsers[@]} -gt 0 ]] || fail "$what: the package has no src/parser.c"
  for parser in "${parsers[@]}"; do
    dir=${parser#"$pkg"/}
    dir=${dir%src/parser.c}  # "" or "typescript/"
    found=$(sed -n 's/^#define LANGUAGE_VERSION \([0-9][0-9]*\).*/\1/p' "$parser" | head -n1)
    [[ -n $found ]] || fail "$what: ${dir}src/parser.c defines no LANGUAGE_VERSION"
    if [[ $found != 13 && $found != 14 ]]; then
      fail "$what: ${dir}src/parser.c is generated for ABI $found, but Debian 12's libtree-sitter 0.20.7 reads ABI 13 and 14 only; lock a release generated for ABI 14 (the 0.23 series) in $LOCK"
    fi
    [[ $found == "$abi" ]] || fail "$what: ${dir}src/parser.c is ABI $found, but $LOCK says $abi"
    mkdir -p "$stage/${dir}src/tree_sitter"
    cp "$parser" "$stage/${dir}src/"
    if [[ -f $pkg/${dir}src/scanner.c ]]; then
      cp "$pkg/${dir}src/scanner.c" "$stage/${dir}src/"
    fi
    local headers=("$pkg/${dir}src/tree_sitter/"*.h)
    [[ ${#headers[@]} -gt 0 ]] || fail "$what: ${dir}src/tree_sitter/ holds no headers"
    cp "${headers[@]}" "$stage/${dir}src/tree_sitter/"
  done
  local common=("$pkg"/common/*.h)
  if [[ ${#common[@]} -gt 0 ]]; then
    mkdir -p "$stage/common"
    cp "${common[@]}" "$stage/common/"
  fi
  local queries=("$pkg"/queries/*.scm)
  [[ ${#queries[@]} -gt 0 ]] || fail "$what: the package has no queries/*.scm"
  mkdir -p "$stage/queries"
  cp "${queries[@]}" "$stage/queries/"
  [[ -f $pkg/LICENSE ]] || fail "$what: the package has no LICENSE"
  cp "$pkg/LICENSE" "$stage/"
}

# Brings subprojects/NAME/ to the locked version; counts it in `unpacked` when it had to.
unpacked=0
install_grammar() {  # lock-line name version abi integrity
  local key=$1 name=$2 version=$3 abi=$4 integrity=$5
  local what="$name@$version" dest=subprojects/$name
  current=$what
  [[ -f $dest/meson.build ]] || fail "$what: $dest/meson.build is missing (every grammar of $LOCK has one, committed)"
  if [[ -f $dest/$STAMP && $(head -n1 "$dest/$STAMP") == "$key" ]]; then
    return 0
  fi

  local tarball=$CACHE/$name-$version.tgz
  fetch "$name" "$version" "$integrity" "$tarball"

  work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-grammar.XXXXXX")
  tar -xzf "$tarball" -C "$work" || fail "$what: cannot unpack $tarball"
  [[ -d $work/package ]] || fail "$what: $tarball holds no package/ folder"
  mkdir "$work/stage"
  select_files "$what" "$abi" "$work/package" "$work/stage"

  # Replace what an earlier run unpacked (listed in its stamp after the first line, which is the
  # grammar's line of the lock as it is there: the subproject's meson.build checks it), then the
  # stamp last: a run stopped half-way leaves no valid stamp, so the next one starts over.
  local entry
  if [[ -f $dest/$STAMP ]]; then
    while IFS= read -r entry; do
      if [[ -n $entry && $entry != */* && $entry != .* && $entry != meson.build ]]; then
        rm -rf "${dest:?}/$entry"
      fi
    done < <(tail -n +2 "$dest/$STAMP")
    rm -f "$dest/$STAMP"
  fi
  local entries=()
  for entry in "$work/stage"/*; do
    entry=$(basename "$entry")
    rm -rf "${dest:?}/$entry"
    mv "$work/stage/$entry" "$dest/"
    entries+=("$entry")
  done
  printf '%s\n' "$key" "${entries[@]}" > "$dest/$STAMP"
  rm -rf "$work"
  work=""
  unpacked=$((unpacked + 1))
  echo "grammars: unpacked $what (ABI $abi) into $dest"
}

[[ -f $LOCK ]] || fail "$LOCK is missing"
count=0
while IFS= read -r -u 3 line; do
  read -r name version abi integrity rest <<<"$line"
  [[ -z ${name:-} || $name == \#* ]] && continue
  [[ -n ${integrity:-} && -z ${rest:-} && $integrity == sha512-* && $name == tree-sitter-* ]] ||
    fail "$LOCK: cannot read the line for ${name}: expected NAME VERSION ABI sha512-INTEGRITY"
  [[ $abi == 13 || $abi == 14 ]] ||
    fail "$name@$version: $LOCK says ABI $abi, but Debian 12's libtree-sitter 0.20.7 reads ABI 13 and 14 only"
  count=$((count + 1))
  install_grammar "$line" "$name" "$version" "$abi" "$integrity"
done 3< "$LOCK"
[[ $count -gt 0 ]] || fail "$LOCK names no grammar"
if [[ $unpacked -eq 0 ]]; then
  echo "grammars: all $count grammars up to date"
else
  echo "grammars: $unpacked of $count grammars unpacked, the others were up to date"
fi
