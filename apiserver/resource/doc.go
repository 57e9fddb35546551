// Package resource lists the Kubernetes resources synod serves: names, kinds,
// Go types, scope and subresources. Discovery, storage, printing and
// validation all read this one table.
package resource
