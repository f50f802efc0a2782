// Package plantest holds the planner's golden scenarios, so the tests of
// the planner and of the applier build exactly the same plans.
package plantest
