# mmfree overlay bitstream flow (shared by overlay/<board>/build_bitstream.tcl).
#
#   project -> block design (overlay/<board>/mmfree_<board>.tcl) -> HDL wrapper -> synth_1 -> impl_1
#   (to route_design) -> timing gate: WNS >= 0 and WHS >= 0 or the build fails -> write_bitstream
#   -> build/out/<overlay_name>.bit + .hwh (same stem: pynq needs it) and a timing summary.
# Tcl 8.5 compatible; tests/test_overlay.py sources it with stub Vivado commands.

namespace eval mmfree {}

# Worst setup (max) and hold (min) slack of the open routed design, in ns.
proc ::mmfree::worst_slack {} {
    set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
    set whs [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -hold]]
    if {$wns eq ""} { set wns 0.0 }
    if {$whs eq ""} { set whs 0.0 }
    return [list $wns $whs]
}

# Fail the build when timing is not met (PYNQ's check_timing.tcl convention, on numbers).
proc ::mmfree::timing_gate {report} {
    report_timing_summary -max_paths 10 -file $report
    foreach {wns whs} [::mmfree::worst_slack] break
    puts "mmfree: timing WNS $wns ns, WHS $whs ns ($report)"
    if {$wns < 0 || $whs < 0} {
        error "mmfree: timing not met (WNS $wns ns, WHS $whs ns); see $report. Lower clock_mhz in boards.json for this board and rebuild (HLS and overlay)."
    }
    return [list $wns $whs]
}

proc ::mmfree::run_ok {run} {
    set status [get_property STATUS [get_runs $run]]
    set progress [get_property PROGRESS [get_runs $run]]
    if {$progress ne "100%"} {
        error "mmfree: $run failed ($status); see its log under the project's .runs/$run"
    }
}

proc ::mmfree::find_hwh {bd_name proj_dir} {
    set hwh [get_files -quiet -all -of_objects [get_files -quiet $bd_name.bd] $bd_name.hwh]
    if {[llength $hwh] > 0 && [file exists [lindex $hwh 0]]} { return [lindex $hwh 0] }
    foreach pattern [list "$proj_dir/*.gen/sources_1/bd/$bd_name/hw_handoff/$bd_name.hwh" \
                          "$proj_dir/*.srcs/sources_1/bd/$bd_name/hw_handoff/$bd_name.hwh"] {
        set hits [glob -nocomplain $pattern]
        if {[llength $hits] > 0} { return [lindex $hits 0] }
    }
    error "mmfree: no $bd_name.hwh under $proj_dir"
}

proc ::mmfree::build_bitstream {board_dir {jobs 0}} {
    global MMFREE
    if {$jobs <= 0} {
        set jobs 4
        if {[info exists ::env(MMFREE_JOBS)]} { set jobs $::env(MMFREE_JOBS) }
    }
    # at global level: the scripts define ::mmfree procs and the global array MMFREE
    uplevel #0 [list source [file join $board_dir build board_params.tcl]]
    uplevel #0 [list source [file join $board_dir .. common mmfree_bd.tcl]]
    uplevel #0 [list source [file join $board_dir .. common mmfree_project.tcl]]
    set name $MMFREE(overlay_name)
    set proj_dir [file join $board_dir build vivado]
    set out_dir [file join $board_dir build out]
    file mkdir $out_dir

    ::mmfree::check_vivado_version
    ::mmfree::new_project $proj_dir
    # the board's block design script (PYNQ layout: overlay/<board>/<overlay>.tcl)
    uplevel #0 [list source [file join $board_dir $name.tcl]]

    set bd_file [get_files $name.bd]
    generate_target all $bd_file
    set wrapper [make_wrapper -files $bd_file -top]
    add_files -norecurse $wrapper
    set_property top ${name}_wrapper [current_fileset]
    update_compile_order -fileset sources_1

    launch_runs synth_1 -jobs $jobs
    wait_on_run synth_1
    ::mmfree::run_ok synth_1
    launch_runs impl_1 -to_step route_design -jobs $jobs
    wait_on_run impl_1
    ::mmfree::run_ok impl_1

    open_run impl_1
    ::mmfree::timing_gate [file join $out_dir ${name}_timing.rpt]
    report_utilization -file [file join $out_dir ${name}_utilization.rpt]
    write_bitstream -force [file join $out_dir $name.bit]
    file copy -force [::mmfree::find_hwh $name $proj_dir] [file join $out_dir $name.hwh]
    puts "mmfree: wrote [file join $out_dir $name.bit] and $name.hwh"
    return [file join $out_dir $name.bit]
}
