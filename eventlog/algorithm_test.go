package eventlog

import "testing"

// TestAlgorithmTables checks that the switch statements Size and hashable
// use agree with the algorithm table that String and Hash read.
func TestAlgorithmTables(t *testing.T) {
	for _, n := range algorithmNames {
		if got := n.alg.Size(); got != n.size {
			t.Errorf("%s: Size() = %d, table says %d", n.name, got, n.size)
		}
		_, ok := n.alg.Hash()
		if got := n.alg.hashable(); got != ok {
			t.Errorf("%s: hashable() = %v, Hash reports %v", n.name, got, ok)
		}
	}
	for _, a := range []Algorithm{0, 0x0010, 0xFFFF} {
		if a.Size() != 0 || a.hashable() {
			t.Errorf("unknown algorithm 0x%04x: Size() = %d, hashable() = %v", uint16(a), a.Size(), a.hashable())
		}
	}
}
