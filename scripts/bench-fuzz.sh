#!/usr/bin/env bash
# bench-fuzz.sh is `make fuzz`: it runs every `func Fuzz*` of the module, one after another, for
# FUZZTIME each (a duration such as 30s, or an iteration count such as 10000x), and fails if any
# fuzzer fails. A failing input is written by `go test` to the package's testdata/fuzz/FuzzXxx/,
# where every later `go test` (and so `make test`) replays it as a regression case; commit it with
# the fix.
#
#   FUZZTIME=30s            time per target (go test -fuzztime)
#   FUZZMINIMIZETIME=100x   how long go test may minimize a new input (-fuzzminimizetime). Its
#                           default (60s) outlasts a short FUZZTIME: the run then stalls while a
#                           large input is minimized and ends "context deadline exceeded".
#   FUZZ_PKGS=./...         packages to search (e.g. ./crypto/... ./lmtp)
#   FUZZ_MATCH=.            only targets whose name matches this extended regexp
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZ_MATCH=${FUZZ_MATCH:-.}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-100x}
read -r -a pkg_args <<<"${FUZZ_PKGS:-./...}"

if ! [[ $FUZZTIME =~ ^[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h|x)$ ]]; then
	echo "fuzz: FUZZTIME must be a duration (30s, 2m) or a count (1000x), not \"$FUZZTIME\"" >&2
	exit 2
fi

# Only packages whose test files declare a fuzz target are compiled for listing.
targets=() # "importpath dir FuzzName"
while read -r ip dir files; do
	[[ -n $files ]] || continue
	found=0
	for f in $files; do
		if grep -q '^func Fuzz' "$dir/$f"; then
			found=1
			break
		fi
	done
	((found)) || continue
	list=$($GO test -list '^Fuzz' "$ip") || {
		echo "fuzz: cannot list the tests of $ip" >&2
		exit 1
	}
	while read -r name; do
		[[ $name == Fuzz* ]] || continue
		[[ $name =~ $FUZZ_MATCH ]] || continue
		targets+=("$ip $dir $name")
	done <<<"$list"
done < <($GO list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' "${pkg_args[@]}")

if [[ ${#targets[@]} -eq 0 ]]; then
	echo "fuzz: no fuzz targets found in ${pkg_args[*]} matching $FUZZ_MATCH" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets, $FUZZTIME each"

stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
failed=()
for t in "${targets[@]}"; do
	read -r ip dir name <<<"$t"
	echo "=== $ip $name"
	touch "$stamp"
	if ! $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$ip"; then
		failed+=("$ip $name")
		# go test names the file too; list it again so the summary has it.
		if [[ -d $dir/testdata/fuzz/$name ]]; then
			find "$dir/testdata/fuzz/$name" -type f -newer "$stamp" -printf '    new regression case: %p\n'
		fi
	fi
done

echo
if [[ ${#failed[@]} -gt 0 ]]; then
	echo "fuzz: ${#failed[@]} of ${#targets[@]} targets FAILED:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed ($FUZZTIME each)"
