/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Prototypes of the hand-written C helpers in helpers.c: function-like macros that bindgen
 * cannot see (static inline functions are wrapped automatically by bindgen's
 * --wrap-static-fns, see gen-bindings.sh).
 */
#ifndef IVNET_HELPERS_H
#define IVNET_HELPERS_H

#include <linux/pci.h>

resource_size_t ivnet_pci_resource_start(struct pci_dev *pdev, int bar);
resource_size_t ivnet_pci_resource_len(struct pci_dev *pdev, int bar);
unsigned long ivnet_pci_resource_flags(struct pci_dev *pdev, int bar);
const char *ivnet_pci_name(const struct pci_dev *pdev);

#endif
