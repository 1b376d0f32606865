#!/usr/bin/env bash
# CDC FluSight weekly influenza hospital admissions, 2024-25 season. The weekly counts are
# turned into patient records per state (`fedstat synth flusight`), and the states are dealt
# to 3 nodes (one node per state would be 53 nodes on one machine; with 3 the network still
# groups by state through the region key). Two windows are converted: the rise of the
# season (August to mid-December 2024) and the peak week ending 2025-02-08.
# Prints one JSON object per line: {"dataset","statistic","value","ci_low","ci_high"}.
# Published: 55,757 admissions nationally in the week ending 2025-02-08; the rates per
# 100,000 use the populations of locations.csv. EPSILON defaults to 1 (counts in the
# thousands need no more).
source "$(dirname "${BASH_SOURCE[0]}")/network.sh"
EPSILON=${EPSILON:-1}
WORK=$(mktemp -d)
ADM=$SHARED/flusight/target-hospital-admissions.csv
LOC=$SHARED/flusight/locations.csv

fedstat synth flusight --admissions "$ADM" --locations "$LOC" --from 2024-08-01 --to 2024-12-14 --out "$WORK/rise" >&2
fedstat synth flusight --admissions "$ADM" --locations "$LOC" --from 2025-02-08 --to 2025-02-08 --id-prefix peak- --out "$WORK/peak" >&2
states=()
for d in "$WORK"/rise/*/; do states+=("$(basename "$d")"); done
REGIONS=$(toml_list "${states[@]}")
network_init "$WORK/net" 3
for i in 1 2 3; do
	files=()
	for ((s = i - 1; s < ${#states[@]}; s += 3)); do
		for w in rise peak; do
			[[ -d "$WORK/$w/${states[s]}" ]] && files+=("$WORK/$w/${states[s]}")
		done
	done
	fedstat node import --data-dir "$WORK/net/node-$i" "${files[@]}" >&2
done
network_start

WEEK="code = '6142004' AND onset_date BETWEEN '2025-02-02' AND '2025-02-08'"
common=(--table conditions --epsilon "$EPSILON" --format json --quiet)
fedstat stats incidence "${common[@]}" --dataset flusight.2025-02-08 --where "$WEEK" --populations "$WORK/rise/populations.csv"
fedstat stats incidence "${common[@]}" --dataset flusight.2025-02-08 --where "$WEEK" --by region --populations "$WORK/rise/populations.csv"
# EARS C2 on the weekly national series (ISO weeks) of the season's rise.
fedstat alert "${common[@]}" --dataset flusight.2024-25 --where "code = '6142004'" --date onset_date \
	--from 2024-08-05 --to 2024-12-08 --method C2
