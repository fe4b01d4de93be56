# The benchmarks (benchmarks/, docs/benchmarks.md): each writes build/bench/<name>.json and
# prints one line. Their prerequisites are files of the pipeline graph in the Makefile,
# which is read first.

.PHONY: bench bench-thresholds bench-feed bench-stack bench-augment bench-masks \
        bench-augment-real bench-dask bench-speed bench-ensemble bench-predict bench-student bench-scale \
        bench-tricks bench-xgb-trees

bench: ## every benchmark, one after another (JSON under build/bench/, one line each)
	$(MAKE) --jobs=1 bench-thresholds bench-feed bench-stack bench-augment bench-dask bench-ensemble bench-predict bench-student bench-xgb-trees

bench-thresholds: $(INSTALLED) ## vectorised vs naive threshold search, 50,000 x 50
	$(PY) -m benchmarks.bench_thresholds --out build/bench/thresholds.json

bench-xgb-trees: $(INSTALLED) ## the export's XGBoost second level in NumPy vs xgboost: 1, 8, 300 rows; import time
	$(PY) -m benchmarks.bench_xgb_trees --out build/bench/xgb_trees.json

bench-feed: $(TRAIN_LABELS) | $(INSTALLED) ## training feed from files vs bare model.fit on arrays
	$(PY) -m benchmarks.bench_feed --images $(TRAIN_DIR) --out build/bench/feed.json

bench-augment: $(TRAIN_LABELS) | $(INSTALLED) ## mask IoU, colour match, skin changed of the colour-change augmentation
	$(PY) -m benchmarks.bench_augment --out build/bench/augment.json

bench-masks: $(if $(SEGMENTER_MAPS),$(BUILD)/segmenter.npz) $(TEST_LIST) | $(INSTALLED) ## garment masks (GrabCut vs segmenter) against the held-out photos' pixel maps
	$(PY) -m benchmarks.bench_masks --config $(CONFIG) --out build/bench/masks_$(NAME).json

AUGMENT_BACKBONE ?= $(word 1,$(BACKBONES))
bench-augment-real: $(FOLDS) $(TRAIN_LABELS) $(TEST_LIST) $(MASK_MODEL) | $(INSTALLED) ## ablation: one backbone's folds trained with vs without the colour-change copies (rare-label F2 + bootstrap CI)
	$(PY) -m benchmarks.bench_augment_real --config $(CONFIG) --backbone $(AUGMENT_BACKBONE) --folds $(FOLDS) \
	  --work build/bench/augment_real_$(NAME) --masks-json build/bench/masks_$(notdir $(patsubst %/,%,$(dir $(MASK_MODEL)))).json \
	  --out build/bench/augment_real_$(NAME).json $(BENCH_ARGS)

bench-dask: $(INSTALLED) ## stacker grid (+ 4 tiny CNN jobs) serial vs a 2-worker local cluster
	$(PY) -m benchmarks.bench_dask --cnn-jobs 4 --out build/bench/dask.json

bench-speed: | $(INSTALLED) ## clean build + timed `make all` of CONFIG: wall time, train-cnn share, decodes per image
	$(PY) -m benchmarks.bench_speed --config $(CONFIG) --venv $(VENV) --out build/bench/speed$(if $(filter demo,$(NAME)),,_$(NAME)).json

bench-ensemble: $(BUILD)/report/metrics.json | $(INSTALLED) ## held-out F2/F1 of every backbone, the sklearn baseline, stack and vote
	$(PY) -m benchmarks.bench_ensemble --metrics $< --out build/bench/ensemble_$(NAME).json

TRICK ?= pseudo
bench-tricks: $(BUILD)/report/metrics.json $(SUBMISSION) | $(INSTALLED) ## ablation: CONFIG's build again with TRICK (pseudo, denoise, repeat, rate, guard) on; held-out F2/F1 gains + paired CIs
	$(PY) -m benchmarks.bench_tricks --config $(CONFIG) --trick $(TRICK) --build $(BUILD) --folds $(FOLDS) \
	  --submissions $(SUBMISSIONS) --work build/bench/tricks_$(NAME)_$(TRICK) \
	  --out build/bench/tricks_$(NAME)_$(TRICK).json

bench-predict: $(BUILD)/report/index.html $(EXPORT) | $(INSTALLED) ## `make predict` of one image, cold; the page's warm per-image latency (p50/p95 of 50); export vs Keras in process
	$(PY) -m benchmarks.bench_predict --config $(CONFIG) --build $(BUILD) --out build/bench/predict$(if $(filter demo,$(NAME)),,_$(NAME)).json

bench-student: $(BUILD)/report/metrics.json $(EXPORT) | $(INSTALLED) ## the distilled student vs the vote and the best single: held-out F2/F1 + paired CIs, per-image latency
	$(PY) -m benchmarks.bench_student --config $(CONFIG) --build $(BUILD) --out build/bench/student_$(NAME).json

SCALE_SIZES ?= 5000 20000 54908
bench-scale: $(INSTALLED) ## the second level at JD size (5k/20k/55k x 128 columns): per-stage time + peak RSS, local and on a 2-worker cluster
	$(PY) -m benchmarks.bench_scale --sizes $(SCALE_SIZES) --agreement --full-grid-estimate \
	  --out build/bench/scale.json $(BENCH_ARGS)

bench-stack: $(BASE_PREDS) | $(INSTALLED) ## our selection+stack+thresholds+vote vs a scikit-learn stack
	$(PY) -m benchmarks.bench_stack --config $(CONFIG) --build $(BUILD) \
	  --out build/bench/stack_vs_sklearn.json
