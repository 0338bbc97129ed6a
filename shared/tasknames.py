"""Celery task names and their queues: the dispatcher enqueues by name and never imports the workers."""

INGEST_PLAN = "ingest.plan"
INGEST_CONVERT = "ingest.convert"
INGEST_ASSEMBLE = "ingest.assemble"
NNUNET_PREPROCESS = "nnunet.preprocess"
NNUNET_TRAIN_FOLD = "nnunet.train_fold"
NNUNET_EVALUATE = "nnunet.evaluate"
CLASSIFY_CHANNEL = "classify.segmentation_channel"
CLASSIFY_TRAIN = "classify.train"
CLASSIFY_PREDICT = "classify.predict"
PREDICT_EXPORT = "predict.export"
PREDICT_IMPORT = "predict.import"
PREDICT_RANK = "predict.rank"
EVALUATE_COHORT = "evaluate.cohort"
SWEEP_TRIAL = "sweep.trial"
SWEEP_FINISH = "sweep.finish"
SUPERRES_TRAIN = "superres.train"
REAP = "jobs.reap"

QUEUE_OF = {
    INGEST_PLAN: "cpu",
    INGEST_CONVERT: "cpu",
    INGEST_ASSEMBLE: "cpu",
    NNUNET_PREPROCESS: "cpu",
    NNUNET_TRAIN_FOLD: "gpu",
    NNUNET_EVALUATE: "gpu",
    CLASSIFY_CHANNEL: "gpu",
    CLASSIFY_TRAIN: "gpu",
    CLASSIFY_PREDICT: "gpu",
    PREDICT_EXPORT: "gpu",  # torch makes the ONNX file
    PREDICT_IMPORT: "cpu",  # unpacking and nnU-Net's install: no torch
    PREDICT_RANK: "gpu",
    EVALUATE_COHORT: "gpu",
    SWEEP_TRIAL: "gpu",
    SWEEP_FINISH: "gpu",
    SUPERRES_TRAIN: "gpu",
    REAP: "cpu",
}
