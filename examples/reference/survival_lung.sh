#!/usr/bin/env bash
# survival::lung (NCCTG advanced lung cancer): Kaplan-Meier median survival, overall and by
# sex, and a Cox model age + sex, the 228 patients split across 3 nodes.
# Prints one JSON object per line: {"dataset","statistic","value","ci_low","ci_high"}.
# Published: median survival 310 days (sex=1: 270, sex=2: 426); coxph age 0.01705,
# sex -0.5132. EPSILON (default 1e7: small noise) is the budget of each analysis.
source "$(dirname "${BASH_SOURCE[0]}")/network.sh"
EPSILON=${EPSILON:-1e7}
SCHEMA=$REPO/examples/reference/schemas/lung.toml

study_network lung "$SCHEMA" "$SHARED/reference/survival_lung.csv" 3

common=(--schema "$SCHEMA" --table lung --time time --status status --event 2 --dataset lung --epsilon "$EPSILON" --format json --quiet)
fedstat stats km "${common[@]}"
fedstat stats km "${common[@]}" --strata sex
# Weekly time bins: the risk sets are suffix sums over the bins, fewer bins mean less
# noise; Efron's ties on weekly bins move the coefficients by < 0.0005 here.
fedstat stats cox "${common[@]}" --x age --x sex --width 7
