package admin

import (
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/internal/store"
)

// The node's data sources that this package hands out (OpenStore,
// OpenStoreOn, OpenWarehouse): node.Config.Data takes either as it is.
var (
	_ node.DataSource = (*store.Store)(nil)
	_ node.DataSource = (*Warehouse)(nil)
	// The store answers queries across linked agencies; a warehouse does
	// not (yet): a node on one refuses them, saying so.
	_ node.LinkSource = (*store.Store)(nil)
)
