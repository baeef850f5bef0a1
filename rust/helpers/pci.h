/* SPDX-License-Identifier: GPL-2.0 */
/* PCI helpers (rust/pci.rs): BAR resources, the device name, MSI-X state. */
#ifndef IVNET_HELPERS_PCI_H
#define IVNET_HELPERS_PCI_H

#include <linux/pci.h>

resource_size_t ivnet_pci_resource_start(struct pci_dev *pdev, int bar);
resource_size_t ivnet_pci_resource_len(struct pci_dev *pdev, int bar);
unsigned long ivnet_pci_resource_flags(struct pci_dev *pdev, int bar);
const char *ivnet_pci_name(const struct pci_dev *pdev);
bool ivnet_pci_msix_enabled(const struct pci_dev *pdev);

#endif
