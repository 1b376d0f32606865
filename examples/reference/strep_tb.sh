#!/usr/bin/env bash
# MRC streptomycin trial (BMJ 1948): deaths and radiological improvement at 6 months by
# arm, with chi-square and Fisher exact tests, the data split across 3 nodes.
# Prints one JSON object per line: {"dataset","statistic","value","ci_low","ci_high"}.
# Published: 4 of 55 (streptomycin) vs 14 of 52 (control) died; 28 of 55 vs 4 of 52
# considerably improved. EPSILON (default 1e7: small noise) is the budget of each analysis.
source "$(dirname "${BASH_SOURCE[0]}")/network.sh"
EPSILON=${EPSILON:-1e7}
SCHEMA=$REPO/examples/reference/schemas/strep_tb.toml

study_network strep_tb "$SCHEMA" "$SHARED/reference/strep_tb.csv" 3

common=(--schema "$SCHEMA" --table strep_tb --row arm --col radiologic_6m --dataset strep_tb --epsilon "$EPSILON" --format json --quiet)
fedstat stats chisq "${common[@]}" --yes 1_Death --name deaths
fedstat stats chisq "${common[@]}" --yes 6_Considerable_improvement --name improved
