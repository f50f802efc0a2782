// Package labtest proves ifup-balance against the real kernel: each test
// builds a throwaway namespace lab (a LAN host, the router, ISPs and an
// internet server), runs the real binary inside the router namespace and
// checks what traffic actually does. The tests skip when not run as root.
package labtest
