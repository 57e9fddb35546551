// Package serviceaccount is the controller-manager's serviceaccount
// controller (Kubernetes' ServiceAccountsController): every active
// namespace has a "default" ServiceAccount, created when the namespace
// appears and again whenever it is deleted.
package serviceaccount
