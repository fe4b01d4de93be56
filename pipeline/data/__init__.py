"""The data: the contract (labels, test list, truth), the digest manifest, folds, the decode cache,
duplicate finding and the importers of public data sets."""
