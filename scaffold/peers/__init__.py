"""Peer libraries run side by side with the template in the benchmarks (imported only by them)."""
