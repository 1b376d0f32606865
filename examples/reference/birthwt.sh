#!/usr/bin/env bash
# MASS::birthwt (Hosmer & Lemeshow): logistic regression low ~ age + lwt + race + ftv with
# race as a factor, by federated Newton-Raphson, the 189 births split across 3 nodes.
# Prints one JSON object per line: {"dataset","statistic","value","ci_low","ci_high"}.
# Published (glm): intercept 1.295, age -0.024, lwt -0.014, race2 1.004, race3 0.433,
# ftv -0.049. EPSILON (default 1e7: small noise) is the budget of the whole fit (6 rounds).
source "$(dirname "${BASH_SOURCE[0]}")/network.sh"
EPSILON=${EPSILON:-1e7}
SCHEMA=$REPO/examples/reference/schemas/birthwt.toml

study_network birthwt "$SCHEMA" "$SHARED/reference/MASS_birthwt.csv" 3

fedstat stats logit --schema "$SCHEMA" --table birthwt --outcome low --x age --x lwt --factor race --x ftv \
	--dataset birthwt --epsilon "$EPSILON" --format json --quiet
# One round of X'X and X'y: birth weight in grams on the same covariates.
fedstat stats linreg --schema "$SCHEMA" --table birthwt --outcome bwt --x age --x lwt --factor race --x ftv \
	--dataset birthwt --epsilon "$EPSILON" --format json --quiet
