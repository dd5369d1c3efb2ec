# Detection time per strategy against its configured bound.
# gnuplot -e "data='detection.dat'; output='detection-time.png'" detection.gp
set terminal pngcairo size 1200,600 font "DejaVu Sans,11" noenhanced
set output output
set title "Time to detect a dead peer: measured against the configured bound" font ",13"
set ylabel "milliseconds after the path went silent"
set style data histograms
set style histogram clustered gap 1.4
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics lc rgb "#dddddd"
set key top left
set yrange [0:*]
set xtics scale 0 font ",10"
set bmargin 7
plot data using 2:xticlabels(1) title "configured bound" lc rgb "#9e9e9e", \
     '' using 3 title "measured, median" lc rgb "#1f77b4", \
     '' using 4 title "measured, worst run" lc rgb "#ff7f0e"
