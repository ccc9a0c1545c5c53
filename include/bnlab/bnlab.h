// Umbrella header: the whole public API of bnlab.
#pragma once

#include <bnlab/version.h>

#include <bnlab/autograd/activation.h>
#include <bnlab/autograd/batch_norm.h>
#include <bnlab/data/synthetic_classification.h>
#include <bnlab/models/mlp.h>
#include <bnlab/nn/functional/batch_norm.h>
#include <bnlab/nn/make_activation.h>
#include <bnlab/nn/modules/activation.h>
#include <bnlab/nn/modules/batch_norm.h>
#include <bnlab/nn/options/activation.h>
#include <bnlab/nn/options/batch_norm.h>
#include <bnlab/nn/probe.h>
