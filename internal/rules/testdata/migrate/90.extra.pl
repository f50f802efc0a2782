#!/usr/bin/perl
use strict;
# Loops over ISPs, qw protocols, double-quoted interpolation.
$B->iptables("-A INPUT -i $_ -p tcp --dport 22 -j ACCEPT") foreach map {$B->dev($_)} $B->isp_services;
$B->ip_rule('add from', $B->ip($_), 'table', $B->table($_)) for ($B->isp_services);
$B->forward(53 => '192.168.10.2', qw(tcp udp));
$B->firewall_rule(FORWARD => 'filter', -i => $B->dev('LAN'), -dport => 8080, -j => 'ACCEPT');
$B->add_route('10.8.0.0/24' => 'tun0', 0);
$B->iptables('-A INPUT -m comment --comment "a;b" -j ACCEPT');   # quoted, so allowed

$B->iptables(['-F', '-P INPUT ACCEPT']);
$B->ip_route('flush table main');
$B->firewall_op('delete');
$B->iptables("-A INPUT -s $ENV{TRUSTED} -j ACCEPT");
$B->iptables('-A INPUT -j LOG') if $debug;
foreach my $lan ($B->lan_services) {
    # a block loop
    $B->iptables("-A INPUT -i ", $B->dev($lan), " -j ACCEPT");
}
$B->force_route($_, '-p tcp --dport 5060') foreach $B->isp_services;
$B->iptables("-A INPUT -p tcp --dport 22 -j ACCEPT\n");
$B->iptables('-A INPUT', $B->vdev('LAN'), '-j ACCEPT');
1;
