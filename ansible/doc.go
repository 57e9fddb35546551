// Package ansible holds the Ansible deployment of synod (site.yml and the
// other playbooks, roles/, inventory/) and the nspawn testbed that runs it
// on one machine (testbed/). It has no Go code: its test
// (testbed_test.go) brings up the testbed, bootstraps it with site.yml
// and checks the result the way an operator would.
package ansible
