/* SPDX-License-Identifier: MIT */
/*
 * pbus: a shared-memory plugin bus for MCP gateways. Umbrella header.
 */
#ifndef PBUS_PBUS_H
#define PBUS_PBUS_H

#define PBUS_VERSION_MAJOR 0
#define PBUS_VERSION_MINOR 1
#define PBUS_VERSION_PATCH 0

#include <pbus/abi.h>
#include <pbus/diag.h>
#include <pbus/hooks.h>
#include <pbus/bus.h>
#include <pbus/agent.h>
#include <pbus/config.h>
#include <pbus/mp.h>
#include <pbus/mgr.h>

#endif /* PBUS_PBUS_H */
