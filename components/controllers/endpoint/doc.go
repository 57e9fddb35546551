// Package endpoint is the controller-manager's endpoint controller: for
// every Service with a selector it keeps an Endpoints object of the same
// name listing the selected pods' IPs (ready ones in addresses, the others
// in notReadyAddresses) with the service's ports resolved against each
// pod, packed into subsets as Kubernetes packs them. Services without a
// selector are left to their owners; a deleted service's Endpoints go.
package endpoint
