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
)
