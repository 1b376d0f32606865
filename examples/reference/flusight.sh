#!/usr/bin/env bash
# CDC FluSight weekly influenza hospital admissions, 2024-25 season. The weekly counts are
# turned into patient records per state (`fedstat synth flusight`), and each state is a node
# of its own: the 52 locations other than the national 'US' aggregate (50 states, DC, Puerto
# Rico) are 52 node processes plus a coordinator on this machine. The decryption threshold
# is 3 (any 3 nodes decrypt; 2 colluding nodes learn nothing) and min_nodes is 52 (a national
# total needs every state). Two windows are converted: the rise of the season (August to
# mid-December 2024) and the peak week ending 2025-02-08.
# Prints one JSON object per line: {"dataset","statistic","value","ci_low","ci_high"}.
# Published: 55,757 admissions nationally in the week ending 2025-02-08; the rates per
# 100,000 use the populations of locations.csv. EPSILON defaults to 1 (counts in the
# thousands need no more).
# Cost, measured on 2 cores: 53 processes, about 8 GB of memory at the peak (150 MB a node),
# 16-40 s in all. NODES=3 deals the states to 3 nodes instead (threshold 3), for a small
# machine; the region key still groups by state.
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
N=${NODES:-${#states[@]}}
# The populations are public: part of the network catalogue (the coordinator's
# populations_file), which `fedstat stats incidence` uses.
THRESHOLD=$((N < 3 ? N : 3)) POPULATIONS=$WORK/rise/populations.csv network_init "$WORK/net" "$N"
for ((i = 1; i <= N; i++)); do
	files=()
	for ((s = i - 1; s < ${#states[@]}; s += N)); do
		for w in rise peak; do
			[[ -d "$WORK/$w/${states[s]}" ]] && files+=("$WORK/$w/${states[s]}")
		done
	done
	fedstat node import --data-dir "$WORK/net/node-$i" "${files[@]}" >&2
done
network_start

WEEK="code = '6142004' AND onset_date BETWEEN '2025-02-02' AND '2025-02-08'"
common=(--table conditions --epsilon "$EPSILON" --format json --quiet)
fedstat stats incidence "${common[@]}" --dataset flusight.2025-02-08 --where "$WEEK"
fedstat stats incidence "${common[@]}" --dataset flusight.2025-02-08 --where "$WEEK" --by region
# EARS C2 on the weekly national series (ISO weeks) of the season's rise.
fedstat alert "${common[@]}" --dataset flusight.2024-25 --where "code = '6142004'" --date onset_date \
	--from 2024-08-05 --to 2024-12-08 --method C2
