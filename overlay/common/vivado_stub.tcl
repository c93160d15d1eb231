# Test-only stand-in for Vivado's Tcl commands (tests/test_overlay.py): every command Tcl does not
# know is recorded in ::stub_calls and answers with a plausible value. Never used by the build.
#   ::stub_version            what `version -short` returns
#   ::stub_slack(setup|hold)  worst slacks the timing gate sees
#   ::stub_ret(<command>)     fixed return value for a command
#   ::stub_act_mhz            what get_property returns for a PS clock's ACT_..FREQMHZ (unset: "")
set ::stub_calls {}
set ::stub_version 2022.1
array set ::stub_slack {setup 0.125 hold 0.010}
array set ::stub_ret {}

rename unknown ::stub_tcl_unknown
proc unknown {args} {
    lappend ::stub_calls $args
    set cmd [namespace tail [lindex $args 0]]
    if {[info exists ::stub_ret($cmd)]} { return $::stub_ret($cmd) }
    switch -- $cmd {
        version { return $::stub_version }
        get_ipdefs {
            set i [lsearch $args -filter]
            if {$i >= 0 && [regexp {NAME == (\S+)} [lindex $args [expr {$i + 1}]] -> name]} {
                return "xilinx.com:ip:$name:99.9"
            }
            return [lindex $args end]
        }
        get_timing_paths { return [expr {[lsearch $args -hold] >= 0 ? "paths_hold" : "paths_setup"}] }
        get_property {
            set prop [lindex $args end-1]
            set obj [lindex $args end]
            switch -- $prop {
                SLACK { return $::stub_slack([expr {$obj eq "paths_hold" ? "hold" : "setup"}]) }
                PROGRESS { return "100%" }
                STATUS { return "route_design Complete!" }
                default {
                    if {[string match *_ACT_*FREQMHZ $prop] && [info exists ::stub_act_mhz]} { return $::stub_act_mhz }
                    return ""
                }
            }
        }
        make_wrapper { return "stub_wrapper.v" }
        create_project {
            set ::stub_ret(get_projects) [lindex $args 2]
            return [lindex $args 2]
        }
        write_bitstream {
            set f [open [lindex $args end] w]; puts $f stub; close $f
            return ""
        }
        get_projects - current_bd_design - get_runs - get_files { return "" }
        create_bd_cell - create_bd_design - create_project - get_bd_cells - get_bd_pins - get_bd_intf_pins -
        get_bd_addr_spaces - get_bd_addr_segs - get_board_parts { return [lindex $args end] }
        default { return "" }
    }
}

proc stub_json_str {s} {
    return "\"[string map [list \\ \\\\ \" \\\" \n \\n \t \\t \r \\r] $s]\""
}
# ::stub_calls as JSON: a list of lists of strings
proc stub_dump_json {} {
    set out {}
    foreach call $::stub_calls {
        set words {}
        foreach w $call { lappend words [stub_json_str $w] }
        lappend out "\[[join $words ,]\]"
    }
    return "\[[join $out ",\n"]\]"
}
