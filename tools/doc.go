// Package tools holds developer programs that run ispbalance in a
// throwaway namespace lab: demo shows balancing and failover, bench
// measures rebuild times. They need root and touch nothing outside the
// namespaces they create.
package tools
