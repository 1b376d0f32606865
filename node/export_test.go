package node

// ForgetSentPartials empties the node's memory of the partials it sent (as
// a restart does), so that a test drives the reveal and commit steps from
// the ledger.
func (n *Node) ForgetSentPartials() {
	n.sent.mu.Lock()
	defer n.sent.mu.Unlock()
	n.sent.entries, n.sent.bytes = nil, 0
}
