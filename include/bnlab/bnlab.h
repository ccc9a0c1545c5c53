// Umbrella header: the whole public API of bnlab.
#pragma once

#include <bnlab/version.h>

#include <bnlab/autograd/activation.h>
#include <bnlab/autograd/batch_norm.h>
#include <bnlab/autograd/batch_norm_act.h>
#include <bnlab/autograd/sync_batch_norm.h>
#include <bnlab/distributed/data_parallel.h>
#include <bnlab/distributed/process_group.h>
#include <bnlab/io/atomic_file.h>
#include <bnlab/data/synthetic_classification.h>
#include <bnlab/models/mlp.h>
#include <bnlab/nn/functional/batch_norm.h>
#include <bnlab/nn/functional/batch_norm_act.h>
#include <bnlab/nn/make_activation.h>
#include <bnlab/nn/modules/activation.h>
#include <bnlab/nn/modules/batch_norm.h>
#include <bnlab/nn/modules/batch_norm_act.h>
#include <bnlab/nn/modules/sync_batch_norm.h>
#include <bnlab/nn/options/activation.h>
#include <bnlab/nn/options/batch_norm.h>
#include <bnlab/nn/options/batch_norm_act.h>
#include <bnlab/nn/options/sync_batch_norm.h>
#include <bnlab/nn/probe.h>
#include <bnlab/train/alerts.h>
#include <bnlab/train/batch_source.h>
#include <bnlab/optim/adam.h>
#include <bnlab/optim/sgd.h>
#include <bnlab/train/lr_schedule.h>
#include <bnlab/train/metrics.h>
#include <bnlab/train/recorder.h>
#include <bnlab/train/sink.h>
#include <bnlab/train/trainer.h>
