// SPDX-License-Identifier: GPL-2.0
/*
 * PCI helpers for rust/pci.rs: the resource macros and fields bindgen cannot reach.
 */
#include "pci.h"

resource_size_t ivnet_pci_resource_start(struct pci_dev *pdev, int bar)
{
	return pci_resource_start(pdev, bar);
}

resource_size_t ivnet_pci_resource_len(struct pci_dev *pdev, int bar)
{
	return pci_resource_len(pdev, bar);
}

unsigned long ivnet_pci_resource_flags(struct pci_dev *pdev, int bar)
{
	return pci_resource_flags(pdev, bar);
}

const char *ivnet_pci_name(const struct pci_dev *pdev)
{
	return pci_name(pdev);
}

bool ivnet_pci_msix_enabled(const struct pci_dev *pdev)
{
	return pdev->msix_enabled;
}
