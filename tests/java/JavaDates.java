// What Java itself does with our date patterns, for tests/javadate_java.rs.
//
// Run: java tests/java/JavaDates.java FORMAT_CASES PARSE_CASES
// (Java 17 single-file launch, no dependencies.)
//
// FORMAT_CASES lines are "pattern\t...", "instant\t..." or "zone\t..."; every
// pattern is formatted at every instant in every zone, in that nesting order,
// with DateTimeFormatter.ofPattern(p, Locale.ENGLISH).withZone(z). Prints
// "F\t<n>\t<text>" per case.
//
// PARSE_CASES lines are "pattern\ttext\tzone\texpectation"; each text is
// parsed to an Instant with the same formatter. Prints "P\t<n>\t<epoch
// second>\t<nano>".
//
// Failures print "!ERROR <message>" in place of the result. Zones are read
// as ZoneId.of(z, ZoneId.SHORT_IDS). Blank lines and '#' comments are skipped.

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

public class JavaDates {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java JavaDates.java FORMAT_CASES PARSE_CASES");
            System.exit(2);
        }
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
        formatCases(Path.of(args[0]), out);
        parseCases(Path.of(args[1]), out);
        out.flush();
    }

    static List<String[]> rows(Path file) throws Exception {
        List<String[]> rows = new ArrayList<>();
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            rows.add(line.split("\t", -1));
        }
        return rows;
    }

    static DateTimeFormatter formatter(String pattern, String zone) {
        return DateTimeFormatter.ofPattern(pattern, Locale.ENGLISH).withZone(ZoneId.of(zone, ZoneId.SHORT_IDS));
    }

    static void formatCases(Path file, PrintStream out) throws Exception {
        List<String> patterns = new ArrayList<>();
        List<String> instants = new ArrayList<>();
        List<String> zones = new ArrayList<>();
        for (String[] row : rows(file)) {
            switch (row[0]) {
                case "pattern": patterns.add(row[1]); break;
                case "instant": instants.add(row[1]); break;
                case "zone": zones.add(row[1]); break;
                default: throw new IllegalArgumentException("unknown line kind " + row[0]);
            }
        }
        int n = 0;
        for (String pattern : patterns) {
            for (String instant : instants) {
                for (String zone : zones) {
                    String result;
                    try {
                        result = formatter(pattern, zone).format(Instant.parse(instant));
                    } catch (RuntimeException e) {
                        result = "!ERROR " + e.getMessage();
                    }
                    out.println("F\t" + n++ + "\t" + result);
                }
            }
        }
    }

    static void parseCases(Path file, PrintStream out) throws Exception {
        int n = 0;
        for (String[] row : rows(file)) {
            String result;
            try {
                Instant instant = formatter(row[0], row[2]).parse(row[1], Instant::from);
                result = instant.getEpochSecond() + "\t" + instant.getNano();
            } catch (RuntimeException e) {
                result = "!ERROR " + e.getMessage();
            }
            out.println("P\t" + n++ + "\t" + result);
        }
    }
}
