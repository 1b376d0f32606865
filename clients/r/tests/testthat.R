library(testthat)
library(fedstat)

test_check("fedstat")
